"""The real architectures `bench` builds with random weights: one small official checkpoint per generation.

The sizes are the official `config.json` values (only sizes and structure; token ids come from
the tokenizer `bench.models` pairs with them) and the official processors' pixel bounds. Each
record names the checkpoint it copies and where its numbers were read (no hub is reachable here).

- Qwen2-VL: Qwen/Qwen2-VL-2B-Instruct (2,209 M parameters).
- Qwen2.5-VL: Qwen/Qwen2.5-VL-3B-Instruct, the smallest Qwen2.5-VL (there is no 2B).
- Qwen3-VL: Qwen/Qwen3-VL-2B-Instruct.
- Qwen3.5: Qwen/Qwen3.5-0.8B, the smallest Qwen3.5 (every Qwen3.5 is natively multimodal). Its
  2B sibling's full config.json could not be found in the material searchable here (only that
  its text width is 2048 and its vision width 1024), so the 0.8B shape, whose config.json is
  quoted whole in public code, stands for the generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Shape:
    family: str  # the registry's (grounding.generations)
    source: str  # the official checkpoint copied
    read_from: str  # where its config.json values were read
    model_type: str
    text: dict
    vision: dict
    image_pixels: tuple[int, int]  # the image processor's (shortest_edge, longest_edge)
    video_pixels: tuple[int, int]
    expected_parameters: tuple[int, int] | None = None  # (total, vision): counted from this config, a drift check
    extra: dict = field(default_factory=dict)  # top-level config keys


SHAPES: dict[str, Shape] = {
    "qwen2-vl": Shape(
        family="qwen2-vl",
        source="Qwen/Qwen2-VL-2B-Instruct",
        read_from="config.json and preprocessor_config.json on the Hugging Face Hub (copied before this project)",
        model_type="qwen2_vl",
        text={
            "vocab_size": 151936,
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "max_window_layers": 28,
            "sliding_window": 32768,
            "use_sliding_window": False,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        },
        vision={
            "depth": 32,
            "embed_dim": 1280,
            "hidden_size": 1536,
            "hidden_act": "quick_gelu",
            "mlp_ratio": 4,
            "num_heads": 16,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_pixels=(56 * 56, 28 * 28 * 16384),
        video_pixels=(56 * 56, 28 * 28 * 16384),
        expected_parameters=(2_208_985_600, 665_271_296),
    ),
    "qwen2.5-vl": Shape(
        family="qwen2.5-vl",
        source="Qwen/Qwen2.5-VL-3B-Instruct",
        read_from="its config.json as quoted whole in public code (e.g. a Qwen2.5-VL-3B JSON-parsing test and model "
        "notes that print it; identical values)",
        model_type="qwen2_5_vl",
        text={
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 128000,
            "max_window_layers": 70,
            "sliding_window": 32768,
            "use_sliding_window": False,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        },
        vision={
            "depth": 32,
            "hidden_act": "silu",
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "in_channels": 3,
            "out_hidden_size": 2048,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2,
            "temporal_patch_size": 2,
        },
        image_pixels=(56 * 56, 28 * 28 * 16384),
        video_pixels=(56 * 56, 28 * 28 * 16384),
        expected_parameters=(3_754_622_976, 668_684_288),
    ),
    "qwen3-vl": Shape(
        family="qwen3-vl",
        source="Qwen/Qwen3-VL-2B-Instruct",
        read_from="its config.json as quoted in public code (config-resolution tests of two inference engines; "
        "identical values), preprocessor sizes as in Qwen3-VL's preprocessor_config.json",
        model_type="qwen3_vl",
        text={
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "hidden_act": "silu",
            "attention_bias": False,
            "max_position_embeddings": 262144,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [24, 20, 20],
                "mrope_interleaved": True,
            },
        },
        vision={
            "depth": 24,
            "hidden_size": 1024,
            "hidden_act": "gelu_pytorch_tanh",
            "intermediate_size": 4096,
            "num_heads": 16,
            "in_channels": 3,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 2048,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [5, 11, 17],
        },
        image_pixels=(65536, 16777216),
        video_pixels=(4096, 25165824),
        expected_parameters=(2_127_532_032, 406_957_056),
    ),
    "qwen3.5": Shape(
        family="qwen3.5",
        source="Qwen/Qwen3.5-0.8B",
        read_from="its config.json as mirrored whole in a public C++ config test (\"compact mirror of "
        "Qwen/Qwen3.5-0.8B's config.json\") and a second parser test; processor sizes as Qwen3.5's "
        "preprocessor_config.json (the same as Qwen3-VL's)",
        model_type="qwen3_5",
        text={
            "vocab_size": 248320,
            "hidden_size": 1024,
            "intermediate_size": 3584,
            "num_hidden_layers": 24,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "head_dim": 256,
            "attention_bias": False,
            "attn_output_gate": True,
            "linear_num_key_heads": 16,
            "linear_num_value_heads": 16,
            "linear_key_head_dim": 128,
            "linear_value_head_dim": 128,
            "linear_conv_kernel_dim": 4,
            "rms_norm_eps": 1e-6,
            "full_attention_interval": 4,
            "layer_types": ["linear_attention"] * 3 + ["full_attention"],  # repeated to 24 below
            "max_position_embeddings": 262144,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000000.0,
                "partial_rotary_factor": 0.25,
                "mrope_section": [11, 11, 10],
                "mrope_interleaved": True,
            },
        },
        vision={
            "depth": 12,
            "hidden_size": 768,
            "hidden_act": "gelu_pytorch_tanh",
            "num_heads": 12,
            "intermediate_size": 3072,
            "in_channels": 3,
            "patch_size": 16,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "out_hidden_size": 1024,
            "num_position_embeddings": 2304,
        },
        image_pixels=(65536, 16777216),
        video_pixels=(4096, 25165824),
        expected_parameters=(852_985_920, 100_592_896),  # without the multi-token-prediction layer transformers skips
    ),
}


def text_config(shape: Shape) -> dict:
    """The shape's text config, with `layer_types` spelled out for every layer."""
    text = dict(shape.text)
    if "layer_types" in text:
        pattern = text["layer_types"]
        text["layer_types"] = [pattern[i % len(pattern)] for i in range(text["num_hidden_layers"])]
    return text
