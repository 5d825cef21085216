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
    assert FAMILIES == ("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qwen3.5", "qwen4-exp")
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
        ("qwen4_exp", "qwen4-exp"),  # transformers 5.25's Qwen4-Exp (Qwen3.8-Flash-Next)
        ("qwen4_exp_text", "qwen4-exp"),  # its text part
    ],
)
def test_model_types(model_type, family):
    assert family_from_model_type(model_type) == family


@pytest.mark.parametrize("model_type", ["qwen2", "qwen3", "llava", "qwen2_5_omni", "qwen3_next", "qwen4_exp_vision", ""])
def test_unknown_model_types_are_refused(model_type):
    with pytest.raises(ValueError, match="unknown model_type"):
        family_from_model_type(model_type)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        # Qwen3.5 and every later Qwen3.x are natively multimodal: no "VL" in their names
        ("Qwen/Qwen3.5-27B", "qwen3.5"),  # dense
        ("Qwen/Qwen3.5-35B-A3B", "qwen3.5"),  # the MoE
        ("Qwen/Qwen3.5-0.8B", "qwen3.5"),  # a size with a decimal point after the version
        ("qwen3_5", "qwen3.5"),  # the model_type spelling
        ("qwen3_5_moe", "qwen3.5"),
        ("Qwen/Qwen3.6-35B-A3B", "qwen3.5"),  # Qwen3.6 checkpoints are model_type qwen3_5
        ("Qwen/Qwen3.6-27B", "qwen3.5"),
        ("Qwen3.6-35B-A3B-Thinking", "qwen3.5"),  # a Thinking variant, without its org
        ("Qwen/Qwen3.6-35B-A3B-FP8", "qwen3.5"),  # an FP8 re-upload
        ("unsloth/Qwen3.6-27B-GGUF", "qwen3.5"),  # a GGUF re-upload
        ("cpatonn/Qwen3.6-27B-AWQ-4bit", "qwen3.5"),  # an AWQ one
        ("/models/Qwen3.6-27B-Q4_K_M.gguf", "qwen3.5"),  # a local GGUF file
        ("qwen3.6-plus", "qwen3.5"),  # a hosted API's model name
        ("qwen3.6:35b-a3b", "qwen3.5"),  # Ollama's tag spelling
        ("qwen36-27b", "qwen3.5"),  # no dot at all
        ("Qwen/Qwen3.8-27B", "qwen3.5"),  # Qwen3.8 dense: model_type qwen3_5 too
        ("Qwen3.8-VL-32B-Instruct", "qwen3.5"),  # a later Qwen3.x that does say "VL": still not Qwen3-VL
        ("Qwen/Qwen3-VL-8B-Thinking", "qwen3-vl"),  # Qwen3-VL keeps "VL" and is never 3.5
        ("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3-vl"),  # its MoE
        ("qwen3-vl", "qwen3-vl"),  # lower case, no size
        ("qwen3_vl_moe", "qwen3-vl"),  # the model_type spelling
        # Qwen4-Exp: transformers' name, and the checkpoint published with that model_type
        ("Qwen/Qwen4-Exp", "qwen4-exp"),
        ("qwen4_exp", "qwen4-exp"),  # the model_type spelling
        ("Qwen/Qwen3.8-Flash-Next", "qwen4-exp"),  # not Qwen3.5 although it is a Qwen3.8
        ("Qwen3.8-Flash-Next-Thinking", "qwen4-exp"),
        ("AtomicChat/Qwen3.8-Flash-Next-GGUF", "qwen4-exp"),
        ("qwen38-flash-next", "qwen4-exp"),
        # older generations
        ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl"),
        ("Qwen/Qwen2-VL-2B-Instruct", "qwen2-vl"),
        # not a Qwen VL this app runs
        ("Qwen/Qwen2.5-7B-Instruct", None),  # a text model
        ("Qwen/Qwen3-8B", None),  # a text Qwen3: "-8B" is its size, not a version 3.8
        ("Qwen/Qwen3-4B-Instruct-2507", None),
        ("Qwen/Qwen3-30B-A3B-Thinking-2507", None),
        ("Qwen/Qwen3-32B", None),
        ("Qwen/Qwen3-0.6B", None),
        ("qwen3_8b", None),  # a size written with an underscore
        ("qwen3:8b", None),  # Ollama's text Qwen3
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct", None),
        ("Qwen/Qwen3-Next-80B-A3B-Thinking", None),  # text only: Qwen3-Next is not Qwen4-Exp's "Flash-Next"
        ("Qwen/Qwen3-Omni-30B-A3B-Instruct", None),
        ("Qwen/Qwen3.5-Omni", None),  # not this app's format
        ("Qwen/Qwen3.6-Omni-Flash", None),  # nor any later Omni
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
        "tiny-random-qwen4-exp": "qwen4-exp",
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


def test_qwen4_exp_is_read_as_transformers_defines_it():
    """The record's facts from transformers 5.25's own qwen4_exp config and auto mappings."""
    from transformers import Qwen3_5Config, Qwen4ExpConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    g, qwen35 = generation("qwen4-exp"), generation("qwen3.5")
    config = Qwen4ExpConfig()
    assert (config.model_type, config.text_config.model_type) == g.model_types
    vision = config.vision_config
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (g.patch_size, g.merge_size, 2)
    # Qwen3.5's processor and tokenizer, and its vision token ids: what the record shares with it follows
    assert PROCESSOR_MAPPING_NAMES["qwen4_exp"] == PROCESSOR_MAPPING_NAMES["qwen3_5"] == "Qwen3VLProcessor"
    assert TOKENIZER_MAPPING_NAMES["qwen4_exp"] == TOKENIZER_MAPPING_NAMES["qwen3_5"]
    ids = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    assert [getattr(config, k) for k in ids] == [getattr(Qwen3_5Config(), k) for k in ids]
    shared = ("patch_size", "merge_size", "relative", "keep_tokens", "presets", "has_points", "video_timing", "thinking")
    assert {k: getattr(g, k) for k in shared} == {k: getattr(qwen35, k) for k in shared}


def test_the_tiny_qwen4_exp_keeps_its_architectures_structure(tiny_checkpoints):
    """Linear attention 3 layers in 4, QSA on the others, experts, hyper-connections, a PLE layer."""
    import json

    text = json.loads((tiny_checkpoints["tiny-random-qwen4-exp"] / "config.json").read_text())["text_config"]
    assert text["layer_types"] == ["linear_attention"] * 3 + ["indexed_attention"]
    assert text["indexer_budget"] < 100  # a prompt's tokens outnumber what a query may attend to: QSA selects
    assert text["num_experts"] > text["num_experts_per_tok"] > 1 and text["shared_expert_intermediate_size"] > 0
    assert text["hc_count"] == 4 and text["ple_layer_ids"] == [2]
    engine = tiny_checkpoints.engine("tiny-random-qwen4-exp")
    layers = engine.model.model.language_model.layers
    assert [hasattr(layer, "linear_attn") for layer in layers] == [True, True, True, False]
    assert [layer.ple is not None for layer in layers] == [False, True, False, False]
    # Its cache: linear layers of three states each (the Gated DeltaNet's, the PLE convolution's, the n-gram context)
    from transformers import DynamicCache

    kinds = [type(layer).__name__ for layer in DynamicCache(config=engine.model.config).layers]
    assert kinds == ["LinearAttentionLayer"] * 3 + ["DynamicIndexedLayer"]
    assert DynamicCache(config=engine.model.config).layers[0].number_of_states == 3
