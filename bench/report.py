"""The targets `bench.engine` reports against, and its results as readable tables.

Targets (PASS/FAIL, never adjusted): engine decode ≥ 0.97 × raw; engine turn-1 TTFT ≤ 1.05 ×
raw; TTFT of the text follow-ups (turns 2, 4, 5) with the session ≤ 0.10 × the re-prefill's;
peak RSS of the session conversation ≤ raw generate's peak + 0.5 GiB. A `--quick` run has only
the turn-2 follow-up target. TTFT is the time to the
first token, as the issue words it (the end of the first forward, timed by hooks: the same
clock for raw generate and the engine). The time to the first text the caller receives is
shown beside it: the engine streams token by token, raw generate's `TextIteratorStreamer`
word by word, so that figure favours the engine whenever an answer's first word is long.
"""

from __future__ import annotations

import json
from pathlib import Path

GiB = 2**30
FOLLOW_UPS = (2, 4, 5)  # 1-based turns whose session TTFT must be ≤ 0.10 × the re-prefill's


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def targets(results: dict) -> list[dict]:
    """The four targets (one line per follow-up turn), each with its value, limit and verdict."""
    lines = []

    def line(name: str, value: float | None, limit: float | None, at_most: bool, unit: str) -> None:
        ok = value is not None and limit is not None and (value <= limit if at_most else value >= limit)
        lines.append({"name": name, "value": value, "limit": limit, "at_most": at_most, "unit": unit, "pass": ok})

    if "follow_up" in results:  # --quick
        a, b = results["follow_up"]["reprefill"], results["follow_up"]["session"]
        line("turn 2 follow-up TTFT <= 0.10 x re-prefill", b["first_token_s"], _scaled(a["first_token_s"], 0.10), True, "s")
        lines[-1]["by_first_text"] = (b["first_text_s"], _scaled(a["first_text_s"], 0.10))
        return lines
    raw, eng = results["single_turn"]["raw"], results["single_turn"]["engine"]

    line("engine decode tok/s >= 0.97 x raw", eng["decode_tok_s"], _scaled(raw["decode_tok_s"], 0.97), False, "tok/s")
    line("engine turn-1 TTFT <= 1.05 x raw", eng["first_token_s"], _scaled(raw["first_token_s"], 1.05), True, "s")
    lines[-1]["by_first_text"] = (eng["first_text_s"], _scaled(raw["first_text_s"], 1.05))
    conversation = results["conversation"]
    for turn in FOLLOW_UPS:
        a, b = conversation["reprefill"]["turns"][turn - 1], conversation["session"]["turns"][turn - 1]
        limit = _scaled(a["first_token_s"], 0.10)
        line(f"turn {turn} follow-up TTFT <= 0.10 x re-prefill", b["first_token_s"], limit, True, "s")
        lines[-1]["by_first_text"] = (b["first_text_s"], _scaled(a["first_text_s"], 0.10))
    limit = raw["peak_rss_bytes"] + GiB // 2
    line(
        "5-turn session peak RSS <= raw peak + 0.5 GiB", conversation["session"]["peak_rss_bytes"], limit, True, "bytes"
    )
    return lines


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


# -- printing -----------------------------------------------------------------------------------


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def _gib(value) -> str:
    return "—" if value is None else f"{value / GiB:.2f}"


def report(results: dict) -> str:
    """The results as readable tables and one PASS/FAIL line per target."""
    m, c = results["machine"], results["config"]
    build = (
        "—" if c["build_seconds"] is None else f"{c['build_seconds']:.1f} s ({'now' if c['built_now'] else 'cached'})"
    )
    out = [
        f"shape {c['shape']}, {c.get('family', 'qwen2-vl')} ({c.get('source', '')}: {c['parameters'] / 1e6:,.2f} M parameters, "
        f"{c['dtype']}), build {build}, load {c['load_seconds']:.1f} s; "
        f"{c['repeats']} repeat(s), {c['max_new_tokens']} new tokens, {c['visual_tokens_per_image']} visual tokens per {c['image_side']}² image",
        f"{m['cpu_count']} CPUs, {m['torch_threads']} torch threads, torch {m['torch']}, transformers {m['transformers']}; "
        f"load average before {m['loadavg_before'][0]:.2f}, after {m['loadavg_after'][0]:.2f}",
    ]
    if "follow_up" in results:
        return "\n".join(out + _follow_up_table(results))
    raw, eng, ratio = (results["single_turn"][k] for k in ("raw", "engine", "ratio"))
    out += [
        f"RSS after load {_gib(results['rss']['after_load_bytes'])} GiB, after warm-up {_gib(results['rss']['after_warmup_bytes'])} GiB",
        "",
        "Single turn (1 image)           raw generate   engine turn 1   engine/raw",
    ]
    rows = [
        ("time to first text (s)", "first_text_s", _fmt),
        ("time to first token (s)", "first_token_s", _fmt),
        ("decode (tok/s)", "decode_tok_s", _fmt),
        ("total (s)", "total_s", _fmt),
        ("prompt tokens", "prompt_tokens", _fmt),
        ("CPU / wall", "cpu_per_wall", _fmt),
        ("load average at the end", "loadavg_1min_end", _fmt),
        ("RSS before (GiB)", "rss_before_bytes", _gib),
        ("peak RSS (GiB)", "peak_rss_bytes", _gib),
    ]
    for label, key, fmt in rows:
        r = ratio.get(key)
        out.append(
            f"  {label:<29} {fmt(raw[key]):>12}   {fmt(eng[key]):>13}   {_fmt(r, 3) if r is not None else '':>10}"
        )
    out.append(f"  same prompt tokens: {raw['same_prompt']}")
    conv = results["conversation"]
    a, b = conv["reprefill"], conv["session"]
    out += [
        "",
        "5-turn conversation             (a) re-prefill every turn    (b) engine session",
        "  turn images prompt_tok  1st_text_s  1st_tok_s  tok/s  1st_text_s  1st_tok_s  tok/s  cached  b/a 1st_tok",
    ]
    for i, (ta, tb) in enumerate(zip(a["turns"], b["turns"], strict=True)):
        out.append(
            f"  {i + 1:>4} {ta['images']:>6} {ta['prompt_tokens']:>10}  {_fmt(ta['first_text_s']):>10} {_fmt(ta['first_token_s']):>10} "
            f"{_fmt(ta['decode_tok_s']):>6}  {_fmt(tb['first_text_s']):>10} {_fmt(tb['first_token_s']):>10} {_fmt(tb['decode_tok_s']):>6} "
            f"{tb['cached_tokens']:>7}  {_fmt(conv['first_token_ratio'][i], 3):>10}"
        )
    for label, key in (("CPU / wall", "cpu_per_wall"), ("load average at the end", "loadavg_1min_end")):
        out.append(
            f"  {label} per turn: (a) {' '.join(_fmt(t[key]) for t in a['turns'])}   (b) {' '.join(_fmt(t[key]) for t in b['turns'])}"
        )
    out.append(
        f"  peak RSS (GiB)                  {_gib(a['peak_rss_bytes']):>8} (before {_gib(a['rss_before_bytes'])})"
        f"        {_gib(b['peak_rss_bytes']):>8} (before {_gib(b['rss_before_bytes'])})"
    )
    return "\n".join(out + _targets_lines(results))


def _follow_up_table(results: dict) -> list[str]:
    f = results["follow_up"]
    out = [
        f"RSS after load {_gib(results['rss']['after_load_bytes'])} GiB",
        "",
        f"--quick: turn 1 in a session, then the turn-2 follow-up both ways, {results['config']['repeats']} time(s) each (medians)",
        "  run                        prompt_tok  cached  1st_text_s  1st_tok_s  tok/s  peak RSS (GiB)",
    ]
    for label, t in (
        ("turn 1 (1 image), session", f["turn1"]),
        ("turn 2, re-prefilled", f["reprefill"]),
        ("turn 2, session", f["session"]),
    ):
        out.append(
            f"  {label:<26} {int(t['prompt_tokens']):>10} {int(t['cached_tokens']):>7}  {_fmt(t['first_text_s']):>10} "
            f"{_fmt(t['first_token_s']):>10} {_fmt(t['decode_tok_s']):>6}  {_gib(t['peak_rss_bytes']):>14}"
        )
    pairs = [
        _fmt(b["first_token_s"] / a["first_token_s"], 3)
        for a, b in zip(f["reprefill"]["runs"], f["session"]["runs"], strict=True)
    ]
    out.append(f"  session / re-prefilled time to first token, median of {', '.join(pairs)}: {_fmt(f['first_token_ratio'], 3)}")
    out.append(
        f"  CPU / wall: turn 1 {_fmt(f['turn1']['cpu_per_wall'])}, re-prefilled "
        f"{' '.join(_fmt(r['cpu_per_wall']) for r in f['reprefill']['runs'])}, session "
        f"{' '.join(_fmt(r['cpu_per_wall']) for r in f['session']['runs'])}"
    )
    return out + _targets_lines(results)


def _targets_lines(results: dict) -> list[str]:
    out = ["", "Targets"]
    for t in results["targets"]:
        show = _gib if t["unit"] == "bytes" else (lambda v: _fmt(v, 3))
        unit = "GiB" if t["unit"] == "bytes" else t["unit"]
        relation = "<=" if t["at_most"] else ">="
        aside = ""
        if "by_first_text" in t:  # for information: the same comparison at the first text received
            value, limit = t["by_first_text"]
            aside = f"   (at the first text: {show(value)} {relation} {show(limit)})"
        out.append(
            f"  {'PASS' if t['pass'] else 'FAIL'}  {t['name']}: {show(t['value'])} {relation} {show(t['limit'])} {unit}{aside}"
        )
    return out


def publish(table: str, results: dict, json_path: Path | None) -> None:
    """Print `table`; with `json_path`, also write `results` there as JSON and say so."""
    print(table, flush=True)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {json_path}", flush=True)
