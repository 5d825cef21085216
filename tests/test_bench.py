"""`python -m bench.engine`: every figure is computed and written, on the tiny checkpoint.

The targets are not asserted here: on the tiny model fixed overheads and noise dominate, so
only that each one is computed (with a verdict) is checked. The 2B run is `-m slow`.
"""

from __future__ import annotations

import json
import math

import pytest

from bench import engine as bench

NEW_TOKENS = 8


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_generation(figures: dict, new_tokens: int, rss: bool = True) -> None:
    for key in (
        "first_text_s",
        "first_token_s",
        "decode_tok_s",
        "total_s",
        "prompt_tokens",
        "prefilled_tokens",
        "cpu_per_wall",
    ):
        assert positive(figures[key]), (key, figures[key])
    assert figures["new_tokens"] == new_tokens  # min_new_tokens == max_new_tokens: every run decodes the same
    assert figures["first_token_s"] <= figures["total_s"] and figures["first_text_s"] <= figures["total_s"]
    assert figures["prompt_tokens"] == figures["prefilled_tokens"] + figures["cached_tokens"]
    if rss:  # a conversation's peak RSS is per conversation, not per turn
        assert figures["peak_rss_bytes"] >= figures["rss_before_bytes"] > 0


@pytest.fixture(scope="module")
def results(tiny_checkpoint, tmp_path_factory):
    """One tiny run through the command line, reading back the JSON it writes."""
    patch = pytest.MonkeyPatch()
    patch.setenv("QWEN_CHAT_CACHE", str(tiny_checkpoint.parent))  # the session's tiny checkpoint, not ~/.cache
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    try:
        returned = bench.main(
            ["--shape", "tiny", "--repeats", "1", "--max-new-tokens", str(NEW_TOKENS), "--json", str(out)]
        )
    finally:
        patch.undo()
    written = json.loads(out.read_text())
    assert written["config"]["checkpoint"] == str(tiny_checkpoint)
    assert json.loads(json.dumps(returned)) == written
    return written


def test_machine_and_config_are_recorded(results):
    machine, config = results["machine"], results["config"]
    assert machine["cpu_count"] >= 1 and machine["torch_threads"] >= 1
    assert machine["torch"] and machine["transformers"]
    assert len(machine["loadavg_before"]) == len(machine["loadavg_after"]) == 3
    assert config["shape"] == "tiny" and config["dtype"] == "bfloat16" and config["repeats"] == 1
    assert config["max_new_tokens"] == config["min_new_tokens"] == NEW_TOKENS
    assert positive(config["load_seconds"]) and positive(config["parameters"])
    assert config["visual_tokens_per_image"] > 0 and len(config["turns"]) == 5
    assert results["rss"]["after_load_bytes"] > 0 and results["rss"]["after_warmup_bytes"] > 0


def test_single_turn_figures_and_ratios(results):
    single = results["single_turn"]
    for name in ("raw", "engine"):
        check_generation(single[name], NEW_TOKENS)
        assert len(single[name]["runs"]) == 1
    assert single["raw"]["same_prompt"] is True  # both prefill the very same prompt
    assert single["raw"]["cached_tokens"] == single["engine"]["cached_tokens"] == 0  # a new session
    for key, ratio in single["ratio"].items():
        assert math.isclose(ratio, single["engine"][key] / single["raw"][key]), key


def test_conversation_figures_show_the_cache_reused(results):
    conversation = results["conversation"]
    reprefill, session = conversation["reprefill"], conversation["session"]
    for strategy in (reprefill, session):
        assert [t["images"] for t in strategy["turns"]] == [1, 0, 1, 0, 0]
        for turn in strategy["turns"]:
            check_generation(turn, NEW_TOKENS, rss=False)
        assert strategy["peak_rss_bytes"] >= strategy["rss_before_bytes"] > 0
    assert all(t["cached_tokens"] == 0 for t in reprefill["turns"])
    assert session["turns"][0]["cached_tokens"] == 0
    for a, b in zip(reprefill["turns"][1:], session["turns"][1:], strict=True):
        assert b["cached_tokens"] > 0 and b["prefilled_tokens"] < a["prefilled_tokens"]
    for i, (a, b) in enumerate(zip(reprefill["turns"], session["turns"], strict=True)):
        assert math.isclose(conversation["first_text_ratio"][i], b["first_text_s"] / a["first_text_s"])
        assert math.isclose(conversation["first_token_ratio"][i], b["first_token_s"] / a["first_token_s"])


def test_every_target_is_computed_not_asserted(results):
    names = [t["name"] for t in results["targets"]]
    assert len(names) == 6 and sum("follow-up" in n for n in names) == 3
    for target in results["targets"]:
        assert positive(target["value"]) and positive(target["limit"]), target
        assert target["pass"] == (
            target["value"] <= target["limit"] if target["at_most"] else target["value"] >= target["limit"]
        )
    text = bench.report(results)
    assert text.count("PASS") + text.count("FAIL") == 6


@pytest.mark.parametrize("family", ["qwen3-vl", "qwen3.5"])
def test_a_quick_run_of_another_family_measures_the_follow_up_both_ways(tiny_checkpoints, family, tmp_path):
    """`--family F --quick`: turn 1 in a session, then turn 2 re-prefilled in full and with the session."""
    from grounding.generations import generation

    path = tiny_checkpoints[generation(family).tiny_checkpoint]
    patch = pytest.MonkeyPatch()
    patch.setenv("QWEN_CHAT_CACHE", str(path.parent))
    out = tmp_path / "quick.json"
    try:
        bench.main(["--shape", "tiny", "--family", family, "--quick", "--repeats", "1", "--max-new-tokens", "4", "--json", str(out)])
    finally:
        patch.undo()
    results = json.loads(out.read_text())
    assert results["config"]["family"] == family and results["config"]["checkpoint"] == str(path)
    follow_up = results["follow_up"]
    for name in ("turn1", "reprefill", "session"):
        check_generation(follow_up[name], 4)
    assert follow_up["turn1"]["cached_tokens"] == follow_up["reprefill"]["cached_tokens"] == 0
    assert follow_up["session"]["prompt_tokens"] == follow_up["reprefill"]["prompt_tokens"]
    assert 0 < follow_up["session"]["prefilled_tokens"] < follow_up["reprefill"]["prefilled_tokens"]
    assert math.isclose(follow_up["first_token_ratio"], follow_up["session"]["first_token_s"] / follow_up["reprefill"]["first_token_s"])
    [target] = results["targets"]
    assert "follow-up" in target["name"] and positive(target["value"]) and positive(target["limit"])
    assert bench.report(results).count("PASS") + bench.report(results).count("FAIL") == 1


@pytest.mark.slow
def test_2b_run_computes_every_figure(tmp_path):
    """The real-sized run: builds the 2B checkpoint once (75 s here), then about 40 min in bf16 on a 2-core AVX2 CPU."""
    out = tmp_path / "2b.json"
    bench.main(["--shape", "2b", "--repeats", "1", "--max-new-tokens", "4", "--json", str(out)])
    results = json.loads(out.read_text())
    assert results["config"]["parameters"] == 2_208_985_600
    assert results["config"]["visual_tokens_per_image"] == 256
    check_generation(results["single_turn"]["engine"], 4)
