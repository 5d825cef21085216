"""The newcomer's page without a browser: preset labels and placeholders, the page's CSS off and on Spaces."""

from __future__ import annotations

import re

import pytest

from demo.page.texts import page_css, preset_label
from grounding.generations import FAMILIES, PRESETS, generation, grounding_prompt

PLACEHOLDER = re.compile(r"«[^»]*»")


@pytest.mark.parametrize("family", FAMILIES)
def test_each_preset_marks_at_most_one_placeholder(family):
    for name in PRESETS:
        prompt = grounding_prompt(name, family)
        marks = PLACEHOLDER.findall(prompt)
        assert len(marks) == (0 if name == "Caption with grounding" else 1), (family, name)
        assert prompt.count("«") == prompt.count("»") == len(marks)


@pytest.mark.parametrize("family", FAMILIES)
def test_point_to_is_named_for_what_it_asks(family):
    label = preset_label("Point to", family)
    assert label == ("Point to" if generation(family).has_points else "Box to point at")
    assert all(preset_label(name, family) == name for name in PRESETS if name != "Point to")


def test_share_buttons_are_hidden_off_spaces_only():
    assert 'aria-label="Share"' in page_css(on_spaces=False) and 'aria-label="Share"' not in page_css(on_spaces=True)


# -- versions of a turn: Regenerate keeps the answer shown, an edit keeps the question shown ---------

from types import SimpleNamespace  # noqa: E402

from demo.engines.slot import EngineSlot  # noqa: E402
from demo.page.handlers import ChatHandlers  # noqa: E402
from demo.page.settings import Settings  # noqa: E402
from demo.record.conversation import Conversation, Turn, to_model_messages  # noqa: E402
from demo.views.chat import chatbot_messages, question_turn  # noqa: E402
from tests.fakes import AtLeast, ScriptedEngine  # noqa: E402


def scripted(answers) -> tuple[ChatHandlers, ScriptedEngine]:
    engine = ScriptedEngine(answers)
    slot = EngineSlot("scripted")
    slot.fill(engine)
    return ChatHandlers(slot, min_update_interval=0.0), engine


def last(replies):
    return list(replies)[-1]


def texts(conversation: Conversation) -> list[tuple[str, str]]:
    return [(t.text, t.answer) for t in conversation.turns]


def test_regenerate_keeps_each_answer_and_the_model_sees_the_one_shown():
    handlers, engine = scripted([["one"], ["two"], ["three"], ["after"]])
    conversation = last(handlers.chat("Q", None)).conversation
    last(handlers.regenerate(conversation))
    reply = last(handlers.regenerate(conversation))
    turn = conversation.turns[0]
    assert (turn.answer, turn.version, turn.version_count) == ("three", 2, 3)
    view = chatbot_messages(conversation, "qwen2-vl")
    # The answer carries its versions for the page's ‹ 3/3 › arrows; the question (never edited) does not.
    assert view[-1] == {"role": "assistant", "content": "three", "metadata": {"id": "qvc-version 0 2 3"}}
    assert "metadata" not in view[-2]
    # Back to the first answer: the record shows it, the next question is asked after it.
    reply = handlers.show_version(conversation, 0, 0)
    assert reply.conversation.turns[0].answer == "one"
    assert chatbot_messages(conversation, "qwen2-vl")[-1]["metadata"] == {"id": "qvc-version 0 0 3"}
    last(handlers.chat("And then?", conversation))
    messages, _ = engine.calls[-1]
    assert [m["content"][-1]["text"] for m in messages if m["role"] == "assistant"] == ["one"]


def test_an_edited_question_is_answered_anew_and_the_old_branch_is_kept():
    handlers, engine = scripted([["A1"], ["B1"], ["A2"]])
    conversation = last(handlers.chat("first", None)).conversation
    last(handlers.chat("second", conversation))
    assert question_turn(conversation, "qwen2-vl", 0) == 0 and question_turn(conversation, "qwen2-vl", 2) == 1
    assert question_turn(conversation, "qwen2-vl", 1) is None  # an answer
    reply = last(handlers.edit(conversation, 0, "first, again"))
    assert reply.message is None  # an edit in the chat leaves the textbox alone
    assert texts(conversation) == [("first, again", "A2")]
    messages, _ = engine.calls[-1]
    assert [m["role"] for m in messages] == ["system", "user"] and messages[1]["content"][-1]["text"] == "first, again"
    view = chatbot_messages(conversation, "qwen2-vl")
    assert view[-1]["metadata"] == view[-2]["metadata"] == {"id": "qvc-version 0 1 2"}  # the question was edited
    # The first version comes back with the turn that followed it; the options still reach the edit.
    handlers.show_version(conversation, 0, 0)
    assert texts(conversation) == [("first", "A1"), ("second", "B1")]
    view = chatbot_messages(conversation, "qwen2-vl")
    assert [m.get("metadata") for m in view] == [{"id": "qvc-version 0 0 2"}] * 2 + [None, None]
    handlers.show_version(conversation, 0, 1)
    assert texts(conversation) == [("first, again", "A2")]


def test_every_turns_versions_are_reachable_not_only_the_latest_ones():
    """Issue 23: once a later answer was regenerated, an earlier edit's versions had no option left."""
    handlers, _ = scripted([["A1"], ["B1"], ["A2"], ["B2"], ["B3"]])
    conversation = last(handlers.chat("first", None)).conversation
    last(handlers.chat("second", conversation))
    last(handlers.edit(conversation, 0, "first, again"))  # question 1 has two versions
    last(handlers.chat("second, again", conversation))
    last(handlers.regenerate(conversation))  # and now question 2 too
    tags = [m.get("metadata") for m in chatbot_messages(conversation, "qwen2-vl")]
    # question 1 (edited) and its answer; question 2's answer (regenerated: its question is the same)
    assert tags == [{"id": "qvc-version 0 1 2"}] * 2 + [None, {"id": "qvc-version 1 1 2"}]
    handlers.show_version(conversation, 0, 0)  # the edit's first branch, with its own second turn
    assert texts(conversation) == [("first", "A1"), ("second", "B1")]


def test_edits_that_change_nothing_or_cannot_be_made():
    handlers, engine = scripted([["A1"]])
    conversation = last(handlers.chat("first", None)).conversation
    assert last(handlers.edit(conversation, 0, " first ")).conversation.turns[0].version_count == 1  # unchanged
    for index, text in ((None, "x"), (0, "   "), (0, "y" * 9000)):
        reply = last(handlers.edit(conversation, index, text))
        assert reply.notice.startswith("Not edited: ") and texts(conversation) == [("first", "A1")]
    assert len(engine.calls) == 1


def test_versions_keep_every_field_of_an_answer():
    """A version is the whole turn but its pictures: fields added to Turn later travel with it."""
    conversation = Conversation([Turn("q", answer="a", status="stopped", error="", input_sizes=[(28, 28)])])
    conversation.branch(0)
    assert (conversation.turns[0].status, conversation.turns[0].input_sizes) == ("waiting", [])
    conversation.turns[0].answer, conversation.turns[0].status = "b", "done"
    conversation.show_version(0, 0)
    assert (conversation.turns[0].answer, conversation.turns[0].status, conversation.turns[0].input_sizes) == ("a", "stopped", [(28, 28)])
    with pytest.raises(ValueError):
        conversation.show_version(0, 5)


def test_a_follow_up_after_an_edit_answers_as_a_fresh_conversation_would(engine, photos):
    """KV reuse stays exact: the session that edited (and reuses its cache's longest common prefix)
    answers token for token as a new session asked the edited conversation directly."""
    slot = EngineSlot("tiny-random", engine.family)
    slot.fill(AtLeast(engine, min_new_tokens=8))
    handlers = ChatHandlers(slot)
    settings = Settings(max_new_tokens=8)
    picture = {"text": "Look at this.", "files": [str(photos["chelsea"])]}
    edited, fresh = SimpleNamespace(session_hash="edited"), SimpleNamespace(session_hash="fresh")
    fed: list[int] = []  # tokens fed to the model by each forward pass

    def count(module, args, kwargs):
        fed.append(kwargs["input_ids"].shape[1])

    hook = engine.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        a = last(handlers.chat(picture, None, settings, edited)).conversation
        first = fed[0]  # the whole first prompt, picture and all
        last(handlers.chat("Tell me more.", a, settings, edited))
        fed.clear()
        last(handlers.edit(a, 0, "Look at this again.", settings, edited))
        after_edit = fed[0]
        fed.clear()
        last(handlers.chat("And now?", a, settings, edited))
        reused = fed[0]
        b = last(handlers.chat({**picture, "text": "Look at this again."}, None, settings, fresh)).conversation
        fed.clear()
        last(handlers.chat("And now?", b, settings, fresh))
        assert texts(a) == texts(b) and all(answer for _, answer in texts(a))
        assert a.turns[0].version_count == 2 and len(to_model_messages(a, "")) == 4
        assert after_edit < first / 2  # the edit reused the prefix up to the question: the picture was not fed again
        assert reused == fed[0]  # both follow-ups fed only what came after their session's cached prefix
    finally:
        hook.remove()
        handlers.end_session(edited)
        handlers.end_session(fresh)
