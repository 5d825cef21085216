"""The launched app driven through its API with gradio_client, as a program would use it."""

from __future__ import annotations

from gradio_client import Client, handle_file

from tests.helpers import generating, wait_until


def client(app) -> Client:
    return Client(app["url"], download_files=False, verbose=False)


def message(text: str, *paths) -> dict:
    return {"text": text, "files": [handle_file(str(p)) for p in paths]}


def texts(history: list[dict]) -> list[tuple[str, str]]:
    """(role, text) of each message; files show as their alt text."""
    out = []
    for m in history:
        for part in m["content"]:
            out.append((m["role"], part.get("text") or part.get("alt_text")))
    return out


def test_two_turns_with_two_images_stream_and_keep_roles(app, photos):
    chat = client(app)
    job = chat.submit(message("Compare Picture 1 and Picture 2.", photos["chelsea"], photos["coffee"]), api_name="/chat")
    updates = list(job)
    assert len(updates) >= 3  # streamed, not one final answer
    history, _ = updates[-1]
    # The first update clears the textbox; later ones leave alone what the person types meanwhile.
    assert updates[0][1] == {"text": "", "files": []}
    assert all(textbox == {"__type__": "update"} for _, textbox in updates[1:])
    roles = texts(history)
    assert roles[:5] == [
        ("user", roles[0][1]),
        ("user", "Picture 1"),
        ("user", roles[2][1]),
        ("user", "Picture 2"),
        ("user", "Compare Picture 1 and Picture 2."),
    ]
    assert roles[0][1].startswith("**Picture 1**") and roles[2][1].startswith("**Picture 2**")
    assert roles[-1][0] == "assistant" and roles[-1][1]

    history, _ = chat.predict(message("And now Picture 3?", photos["rocket"]), api_name="/chat")
    roles = texts(history)
    assert [r for r, _ in roles].count("assistant") == 2
    assert ("user", "Picture 3") in roles
    assert "<|" not in "".join(text for _, text in roles)


def test_cancelling_a_job_stops_the_generation_on_the_server(app, photos):
    app["engine"].min_new_tokens = 100_000
    try:
        chat = client(app)
        job = chat.submit(message("Talk for a long time."), api_name="/chat")
        assert wait_until(lambda: generating() and len(job.outputs()) >= 2)
        job.cancel()
        assert wait_until(lambda: not generating() and not app["handlers"].writing.sessions(), timeout=5)
    finally:
        app["engine"].min_new_tokens = 150
    # The next turn of the same session works.
    history, _ = chat.predict(message("Short one."), api_name="/chat")
    assert texts(history)[-1][0] == "assistant"


def test_the_stop_endpoint_keeps_the_partial_answer(app):
    app["engine"].min_new_tokens = 100_000
    try:
        chat = client(app)
        job = chat.submit(message("Talk for a long time."), api_name="/chat")
        assert wait_until(lambda: len(job.outputs()) >= 3)
        history = chat.predict(api_name="/stop")
        assert texts(history)[-1][1].endswith("*(Stopped.)*")
        assert wait_until(lambda: not generating(), timeout=5)
    finally:
        app["engine"].min_new_tokens = 150


def test_two_clients_at_once_keep_separate_histories(app, photos):
    first, second = client(app), client(app)
    job_1 = first.submit(message("I am client one.", photos["chelsea"]), api_name="/chat")
    job_2 = second.submit(message("I am client two."), api_name="/chat")
    history_1, _ = job_1.result(timeout=60)
    history_2, _ = job_2.result(timeout=60)
    history_1, _ = first.predict(message("Still one?"), api_name="/chat")
    joined_1 = " ".join(text for _, text in texts(history_1))
    joined_2 = " ".join(text for _, text in texts(history_2))
    assert "client one" in joined_1 and "Still one?" in joined_1 and "client two" not in joined_1
    assert "client two" in joined_2 and "client one" not in joined_2 and "Picture 1" not in joined_2


def test_regenerate_undo_and_clear_endpoints(app):
    chat = client(app)
    chat.predict(message("First question."), api_name="/chat")
    history, _ = chat.predict(message("Second question."), api_name="/chat")
    assert [r for r, _ in texts(history)] == ["user", "assistant", "user", "assistant"]
    history, _ = chat.predict(api_name="/regenerate")
    assert [r for r, _ in texts(history)] == ["user", "assistant", "user", "assistant"]
    history, restored = chat.predict(api_name="/undo")
    assert [r for r, _ in texts(history)] == ["user", "assistant"] and restored["text"] == "Second question."
    history, _ = chat.predict(api_name="/clear")
    assert history == []


def test_the_readme_client_example_streams_an_answer(app, capsys, monkeypatch):
    """The README's gradio_client snippet, run as written against the launched app."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    snippet = re.search(r"```python\n(from gradio_client.*?)```", readme, re.S).group(1)
    snippet = snippet.replace('"http://127.0.0.1:7860/"', repr(app["url"]))
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    exec(compile(snippet, "README.md", "exec"), {})
    assert len(capsys.readouterr().out.strip()) > 0


def test_an_answer_with_boxes_is_one_message_for_a_client(app, engine, photos):
    """The answer's text is its first part (the README's snippet reads it there); each picture drawn
    follows its label line, and the table of boxes comes last, all in the one assistant message."""
    from tests.fakes import forced_answer

    answer = "In Picture 1, <|object_ref_start|>the cat<|object_ref_end|><|box_start|>(180,80),(800,980)<|box_end|>."
    app["engine"].min_new_tokens = 0  # the forced answer ends by itself
    try:
        with forced_answer(engine, answer):
            history, _ = client(app).predict(message("Where is the cat?", photos["chelsea"]), api_name="/chat")
    finally:
        app["engine"].min_new_tokens = 150
    assert [m["role"] for m in history] == ["user", "user", "user", "assistant"]  # label, picture, question; answer
    parts = history[-1]["content"]
    assert [p["type"] for p in parts] == ["text", "text", "file", "text"]
    assert parts[0]["text"] == "In Picture 1, the cat &#91;Picture 1&#93;."  # Markdown: html.unescape reads it
    assert parts[1]["text"] == "**Picture 1** · 1 grounding" and parts[2]["alt_text"] == "Picture 1, annotated"
    assert parts[3]["text"].splitlines()[-1].startswith("| 1 | the cat | Picture 1 |")
