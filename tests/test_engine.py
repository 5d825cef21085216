"""The transformers engine on the tiny checkpoint: streaming, Stop, decoding, failures."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from demo.engines.base import EngineError, GenerationSettings
from tests.fakes import forced_answer
from tests.helpers import generating

LONG = GenerationSettings(max_new_tokens=100_000, min_new_tokens=100_000)


def question(text: str = "Describe Picture 1.", image: Image.Image | None = None) -> list[dict]:
    content = [{"type": "image", "image": image}] if image is not None else []
    return [{"role": "user", "content": content + [{"type": "text", "text": text}]}]


def test_streams_more_than_one_piece(engine, photos):
    image = Image.open(photos["chelsea"]).convert("RGB")
    settings = GenerationSettings(max_new_tokens=30, min_new_tokens=30)
    pieces = list(engine.stream(question(image=image), settings, threading.Event()))
    assert len(pieces) > 1
    assert all(isinstance(p, str) and p for p in pieces)
    assert not generating()


def test_greedy_answers_are_repeatable(engine):
    settings = GenerationSettings(max_new_tokens=12, min_new_tokens=12)
    first = "".join(engine.stream(question("Hello"), settings, threading.Event()))
    second = "".join(engine.stream(question("Hello"), settings, threading.Event()))
    assert first == second


def test_stop_ends_a_long_generation_within_a_second_and_the_next_turn_works(engine):
    stop = threading.Event()
    pieces = engine.stream(question(), LONG, stop)
    received = [next(pieces) for _ in range(3)]
    stop.set()
    started = time.monotonic()
    rest = list(pieces)  # ends by itself once generate has stopped
    assert time.monotonic() - started < 1.0
    assert not generating()
    assert len(received) + len(rest) < 1000
    # The engine is ready for the next turn.
    after = list(engine.stream(question("Again"), GenerationSettings(max_new_tokens=5, min_new_tokens=5), threading.Event()))
    assert after


def test_closing_the_stream_stops_generation(engine):
    pieces = engine.stream(question(), LONG, threading.Event())
    next(pieces)
    started = time.monotonic()
    pieces.close()  # what Gradio does when a person closes the tab mid-answer
    assert time.monotonic() - started < 1.0
    assert not generating()


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("a cat<|im_end|>", "a cat"),  # end of turn goes
        ("<|endoftext|>", ""),  # so does end of text
        (
            "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>",
            "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>",
        ),  # grounding markers stay for the parser
        ("<|quad_start|>(1,2),(3,4),(5,6),(7,8)<|quad_end|>", "<|quad_start|>(1,2),(3,4),(5,6),(7,8)<|quad_end|>"),
        ("x<|vision_start|><|image_pad|><|vision_end|>y", "xy"),  # vision placeholders never reach the person
        ("plain <b>text</b>", "plain <b>text</b>"),  # ordinary text is untouched
    ],
)
def test_clean_keeps_grounding_markers_and_drops_other_special_tokens(engine, raw, shown):
    assert engine.clean(raw) == shown


def test_decoding_keeps_grounding_markers_generated_by_the_model(engine):
    """The model emits grounding tokens then end of turn: the stream keeps the markers only."""
    answer = "<|object_ref_start|>cat<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"
    with forced_answer(engine, answer):
        text = "".join(engine.stream(question("Find the cat"), GenerationSettings(max_new_tokens=50), threading.Event()))
    assert text == answer


def test_sampling_settings_reach_generate(engine):
    stop = threading.Event()
    kwargs = engine._generation_kwargs(GenerationSettings(temperature=0.7, top_p=0.8), stop)
    config = kwargs["generation_config"]
    assert (config.do_sample, config.temperature, config.top_p, config.top_k) == (True, 0.7, 0.8, 0)
    greedy = engine._generation_kwargs(GenerationSettings(temperature=0.0), stop)["generation_config"]
    assert greedy.do_sample is False
    sampled = list(engine.stream(question(), GenerationSettings(max_new_tokens=5, min_new_tokens=5, temperature=1.0), stop))
    assert sampled


@pytest.mark.parametrize(
    "failure, message",
    [
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "ran out of memory"),  # OOM as CUDA says it
        (MemoryError(), "ran out of memory"),  # OOM as the CPU allocator says it
        (RuntimeError("boom in a kernel"), "generation failed: boom in a kernel"),  # any other crash
    ],
)
def test_a_failure_inside_generate_becomes_one_sentence_and_the_engine_recovers(engine, monkeypatch, failure, message):
    def broken_generate(**kwargs):
        raise failure

    with monkeypatch.context() as patch:
        patch.setattr(engine.model, "generate", broken_generate)
        with pytest.raises(EngineError, match=message):
            list(engine.stream(question(), GenerationSettings(max_new_tokens=5), threading.Event()))
    assert not generating()
    assert list(engine.stream(question(), GenerationSettings(max_new_tokens=3, min_new_tokens=3), threading.Event()))


def test_an_impossible_aspect_ratio_is_refused_with_a_sentence(engine):
    with pytest.raises(EngineError, match="cannot be used"):
        engine.vision_cost((10_000, 10), GenerationSettings())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_new_tokens": 0},  # nothing to generate
        {"temperature": -0.1},  # negative temperature
        {"top_p": 0.0},  # empty nucleus
        {"min_pixels": 1000, "max_pixels": 10},  # bounds upside down
        {"max_new_tokens": 5, "min_new_tokens": 6},  # min above max
    ],
)
def test_settings_refuse_bad_values(kwargs):
    with pytest.raises(ValueError):
        GenerationSettings(**kwargs)


def test_engine_reads_its_capabilities_from_the_checkpoint(engine):
    assert engine.family == "qwen2-vl"
    assert engine.random_weights is True
    assert (engine.default_min_pixels, engine.default_max_pixels) == (56 * 56, 28 * 28 * 64)


def test_min_new_tokens_holds_the_end_tokens_back_exactly_that_long():
    """The engine's own min_new_tokens processor (transformers' rebuilds a vocabulary-wide mask every step)."""
    import torch

    from demo.engines.local.engine import _NoEndBefore

    processor = _NoEndBefore(2, [5, 7])
    allowed = []
    for length in (10, 11, 12, 13):  # a prompt of 10 tokens, then one more per step
        scores = processor(torch.zeros(1, length, dtype=torch.long), torch.zeros(1, 9))
        allowed.append([bool(torch.isfinite(scores[0, i])) for i in (4, 5, 7)])
    assert allowed == [[True, False, False], [True, False, False], [True, True, True], [True, True, True]]
