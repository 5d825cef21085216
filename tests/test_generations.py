"""The registry of generations: one record per generation, and the look-ups everything else uses."""

from __future__ import annotations

import pytest

from grounding.generations import (
    FAMILIES,
    GENERATIONS,
    PRESETS,
    family_from_model_type,
    family_from_name,
    generation,
    tiny_checkpoint_family,
)


def test_one_record_per_family_oldest_first():
    assert FAMILIES == ("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qwen3.5")
    assert len({g.family for g in GENERATIONS}) == len(GENERATIONS)


@pytest.mark.parametrize(
    ("model_type", "family"),
    [
        ("qwen2_vl", "qwen2-vl"),
        ("qwen2_5_vl", "qwen2.5-vl"),
        ("qwen3_vl", "qwen3-vl"),
        ("qwen3_vl_moe", "qwen3-vl"),  # Qwen3-VL-30B-A3B / 235B-A22B
        ("qwen3_5", "qwen3.5"),  # transformers' Qwen3.5 (dense)
        ("qwen3_5_moe", "qwen3.5"),  # Qwen3.5 MoE
        ("Qwen3-5", "qwen3.5"),  # case and dashes ignored
    ],
)
def test_model_types(model_type, family):
    assert family_from_model_type(model_type) == family


@pytest.mark.parametrize("model_type", ["qwen2", "qwen3", "llava", "qwen2_5_omni", ""])
def test_unknown_model_types_are_refused(model_type):
    with pytest.raises(ValueError, match="unknown model_type"):
        family_from_model_type(model_type)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("Qwen/Qwen3.5-27B", "qwen3.5"),  # Qwen3.5 names carry no "VL": natively multimodal
        ("Qwen/Qwen3.5-35B-A3B", "qwen3.5"),  # the MoE
        ("qwen3_5", "qwen3.5"),  # the model_type spelling
        ("Qwen/Qwen3-VL-8B-Thinking", "qwen3-vl"),
        ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl"),
        ("Qwen/Qwen2-VL-2B-Instruct", "qwen2-vl"),
        ("Qwen/Qwen2.5-7B-Instruct", None),  # a text model
        ("Qwen/Qwen3.5-Omni", None),  # not this app's format
    ],
)
def test_family_from_name(name, family):
    assert family_from_name(name) == family


def test_tiny_checkpoints_name_their_family():
    assert {g.tiny_checkpoint: tiny_checkpoint_family(g.tiny_checkpoint) for g in GENERATIONS if g.tiny_checkpoint} == {
        "tiny-random": "qwen2-vl",
        "tiny-random-qwen2.5-vl": "qwen2.5-vl",
        "tiny-random-qwen3-vl": "qwen3-vl",
        "tiny-random-qwen3.5": "qwen3.5",
    }
    assert tiny_checkpoint_family("Qwen/Qwen2-VL-2B-Instruct") is None


def test_every_generation_is_complete():
    for g in GENERATIONS:
        assert set(g.presets) == set(PRESETS), g.family
        assert g.resize_factor in (28, 32)
        assert generation(g.family) is g
    with pytest.raises(ValueError, match="unknown family"):
        generation("llava")


def test_coordinate_spaces():
    # Qwen2.5-VL alone writes absolute pixels of the resized input (REFERENCE.md §1)
    assert [g.family for g in GENERATIONS if not g.relative] == ["qwen2.5-vl"]
