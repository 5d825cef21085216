"""`python -m bench.decode`: decode speed of raw generate and the engine, per forward, on the tiny checkpoint.

As in test_bench, no speed is asserted (noise dominates on the tiny model): only that every side
decodes every token, that the figures come from the forwards' own times, and that they add up.
"""

from __future__ import annotations

import json
import math

import pytest

from bench import decode

NEW_TOKENS = 6


@pytest.mark.parametrize(
    "calls, started, ended, expected",
    [
        # forwards end at 1.0, 1.5, 2.0: first token 1 s after the start, 2 tokens in 1 s, 0.25 s after the last
        ([(1.0, 10, 0), (1.5, 1, 10), (2.0, 1, 11)], 0.0, 2.25, (1.0, 2.0, 0.5, 0.25, 3)),
        # uneven gaps: the rate is over the whole decode, the gap is the median one
        ([(3.0, 5, 0), (3.1, 1, 5), (3.2, 1, 6), (4.0, 1, 7)], 2.0, 4.0, (1.0, 3.0, 0.1, 0.0, 4)),
    ],
)
def test_forward_figures(calls, started, ended, expected):
    figures = decode.forward_figures(calls, started, ended)
    keys = ("first_token_s", "decode_tok_s", "median_gap_s", "tail_s", "new_tokens")
    for key, value in zip(keys, expected, strict=True):
        assert math.isclose(figures[key], value, abs_tol=1e-9), key


def test_forward_figures_need_two_forwards():
    with pytest.raises(ValueError, match="two forwards"):
        decode.forward_figures([(1.0, 10, 0)], 0.0, 1.0)


def test_every_side_decodes_every_token(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QWEN_CHAT_CACHE", str(tiny_checkpoint.parent))  # the session's tiny checkpoint
    out = tmp_path / "decode.json"
    returned = decode.main(["--rounds", "2", "--max-new-tokens", str(NEW_TOKENS), "--json", str(out)])
    results = json.loads(out.read_text())
    assert json.loads(json.dumps(returned)) == results
    assert set(results["runs"]) == set(decode.SIDES)
    for side, runs in results["runs"].items():
        assert len(runs) == 2, side
        for run in runs:
            assert run["new_tokens"] == NEW_TOKENS, side  # min_new_tokens == max_new_tokens
            assert run["decode_tok_s"] > 0 and run["median_gap_s"] > 0 and run["tail_s"] >= 0
            assert run["first_token_s"] > 0
    for side, ratio in results["decode_ratio"].items():
        assert math.isclose(ratio, results["medians"][side]["decode_tok_s"] / results["medians"]["raw"]["decode_tok_s"])
    printed = capsys.readouterr().out
    assert all(side in printed for side in decode.SIDES) and f"wrote {out}" in printed
