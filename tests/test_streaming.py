"""The token streamer: text after every token, whole characters only, same text as one decode."""

from __future__ import annotations

import threading

import pytest
import torch

from demo.engines.base import GenerationSettings
from demo.engines.local.streaming import TokenStreamer
from tests.fakes import forced_answer

ANSWERS = [
    "cycycycycycycycy",  # no space at all: the word-buffering streamer showed nothing until the end
    "The cat sits on the mat.\nIt is grey.",  # plain words and a newline
    "猫が座っている",  # CJK: every character is several bytes, split over byte tokens
    "café crème 🚀 naïve",  # accents and a 4-byte emoji between words
    "<|box_start|>(10,20),(30,40)<|box_end|>",  # special tokens are tokens too
    "  two  spaces\n\n\nand blank lines ",  # whitespace runs and a trailing space
]


def stream_tokens(tokenizer, token_ids: list[int]) -> list[str]:
    """Feed `token_ids` as generate does (prompt first, then one token per step); the pieces out."""
    streamer = TokenStreamer(tokenizer, skip_prompt=True, skip_special_tokens=False)
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt, skipped
    pieces = []
    for token in token_ids:
        streamer.put(torch.tensor([token]))
        while not streamer.text_queue.empty():
            pieces.append(streamer.text_queue.get())
    streamer.end()
    pieces += [p for p in iter(streamer.text_queue.get, streamer.stop_signal)]
    return [p for p in pieces if p]


@pytest.mark.parametrize("answer", ANSWERS)
def test_pieces_join_to_the_whole_decode(engine, answer):
    ids = engine.tokenizer(answer, add_special_tokens=False)["input_ids"]
    pieces = stream_tokens(engine.tokenizer, ids)
    assert "".join(pieces) == engine.tokenizer.decode(ids, skip_special_tokens=False) == answer
    assert not any("\ufffd" in p for p in pieces)  # never half a character


@pytest.mark.parametrize("answer", ANSWERS)
def test_a_piece_for_every_token_that_completes_text(engine, answer):
    ids = engine.tokenizer(answer, add_special_tokens=False)["input_ids"]
    complete = sum(  # tokens after which the text decoded so far ends on a whole character
        not engine.tokenizer.decode(ids[: i + 1], skip_special_tokens=False).endswith("\ufffd") for i in range(len(ids))
    )
    assert len(stream_tokens(engine.tokenizer, ids)) == complete


def test_a_spaceless_answer_streams_from_its_first_token(engine):
    ids = engine.tokenizer("cycycycycycycycy", add_special_tokens=False)["input_ids"]
    assert len(ids) > 2
    streamer = TokenStreamer(engine.tokenizer, skip_prompt=False, skip_special_tokens=False)
    streamer.put(torch.tensor([ids[0]]))
    assert streamer.text_queue.get_nowait() == engine.tokenizer.decode(ids[:1])


def test_end_hands_on_an_incomplete_character(engine):
    ids = engine.tokenizer("é", add_special_tokens=False)["input_ids"]
    assert len(ids) == 2, "the tiny tokenizer is expected to split é into its two bytes"
    assert stream_tokens(engine.tokenizer, ids[:1]) == ["\ufffd"]


def test_rejects_a_batch(engine):
    streamer = TokenStreamer(engine.tokenizer, skip_prompt=False)
    with pytest.raises(ValueError):
        streamer.put(torch.tensor([[1], [2]]))


@pytest.mark.parametrize("answer", ANSWERS[:4])
def test_the_engine_streams_one_piece_per_token(engine, answer):
    ids = engine.tokenizer(answer, add_special_tokens=False)["input_ids"]
    settings = GenerationSettings(max_new_tokens=len(ids) + 1)
    with forced_answer(engine, answer):
        pieces = list(engine.stream([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], settings, threading.Event()))
    assert "".join(pieces) == answer
    assert len(pieces) == len(stream_tokens(engine.tokenizer, ids)) > 1
