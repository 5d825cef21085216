"""bench.quantize's llama.cpp rows: the targets against llama.cpp and the table with rows that lack the app's own figures.

The llama.cpp figures themselves come from a real `llama-server` (bench/llama_cpp.py), which CI
does not build: bench/results/cpu-2b.json is that run's output, and these tests read it as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.quantize import LLAMA_TARGETS, llama_cpp_targets, report

ROOT = Path(__file__).resolve().parent.parent
MEASURED = json.loads((ROOT / "bench" / "results" / "cpu-2b.json").read_text())


def test_each_llama_cpp_target_compares_the_two_variants_it_names():
    figures = {
        "int8": {"decode_tok_s": 10.0, "first_token_s": 5.0},
        "int4": {"decode_tok_s": 15.0, "first_token_s": 6.0, "peak_rss_bytes": 2 * 2**30, "vm_hwm_bytes": 7 * 2**30,
                 "later_start": {"load_peak_bytes": 3 * 2**30}},
        "llama.cpp Q8_0": {"decode_tok_s": 9.0},
        "llama.cpp Q4_K_M": {"decode_tok_s": 15.0, "peak_rss_bytes": 2 * 2**30, "vm_hwm_bytes": 2 * 2**30},
    }
    verdicts = {(t["variant"], t["figure"]): t["pass"] for t in llama_cpp_targets(figures)}
    assert verdicts == {
        ("int4", "decode_tok_s"): True,  # equal is enough: "at least llama.cpp's"
        ("int4", "first_token_s"): False,  # slower than int8's first token
        ("int4", "peak_rss_bytes"): True,  # as much memory answering as llama.cpp
        ("int4", "later_start.load_peak_bytes"): False,  # more while loading (a later start: the first one quantizes)
        ("int8", "decode_tok_s"): True,
    }
    assert llama_cpp_targets({"int8": figures["int8"]}) == []  # nothing to compare with: no verdict, not a PASS


def test_the_committed_run_has_every_variant_and_names_its_cpu():
    variants = MEASURED["variants"]
    assert {"float32", "int8", "int4", "llama.cpp Q8_0", "llama.cpp Q4_K_M"} <= set(variants)
    assert MEASURED["machine"]["cpu"]
    assert len(MEASURED["llama_cpp_targets"]) == len(LLAMA_TARGETS)
    # llama.cpp read the same picture and question: its prompt within a few tokens of the app's
    assert abs(variants["llama.cpp Q8_0"]["prompt_tokens"] - variants["float32"]["prompt_tokens"]) <= 8
    assert variants["llama.cpp Q4_K_M"]["runs"][0]["timings"]["cache_n"] == 0  # nothing reused between questions
    table = report(MEASURED)
    assert "llama.cpp Q4_K_M" in table and "Targets against llama.cpp" in table
    assert table.count("FAIL  int4") + table.count("PASS  int4") == 3 + 4  # against float32, and against llama.cpp
