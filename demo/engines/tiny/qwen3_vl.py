"""Tiny Qwen3-VL: `Qwen3VLForConditionalGeneration` + `Qwen3VLProcessor`, Instruct or Thinking.

Shaped like Qwen/Qwen3-VL-2B-Instruct (config.json): vision patch 16, merge 2, temporal patch
2, a learned position grid (`num_position_embeddings`), GELU-tanh MLPs, DeepStack (the outputs
of vision blocks `deepstack_visual_indexes` [5, 11, 17] of 24 are added to the first text
layers; here [1, 2] of 4), interleaved M-RoPE (sections [24, 20, 20] of head_dim 128). Image and video normalisation 0.5/0.5, as its processor config. Its vocabulary is
Qwen3's: the 14 Qwen2 special tokens, then 12 that are not special (<tool_call> ... </think>).
The Thinking variant differs only in its chat template (the real ones differ in weights too).
"""

from __future__ import annotations

from pathlib import Path

from demo.engines.tiny import common
from grounding.generations import QWEN2_SPECIALS

TEMPLATES = {"instruct": "qwen3-vl-instruct.jinja", "thinking": "qwen3-vl-thinking.jinja"}
ADDED = tuple((t, True) for t in QWEN2_SPECIALS) + tuple(
    (t, False) for t in common.QWEN2_5_ADDED + common.QWEN3_ADDED
)


def build(out_dir: Path, variant: str = "instruct") -> None:
    from transformers import (
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    chat_template = common.template(TEMPLATES[variant])
    tokenizer = common.train_tokenizer(Qwen2Tokenizer, PRETOKENIZE_REGEX, ADDED, chat_template)
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": common.HIDDEN,
            "intermediate_size": 128,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [4, 2, 2],  # sums to head_dim / 2, in the 2B's proportions
                "mrope_interleaved": True,
            },
            "tie_word_embeddings": common.TIE_WORD_EMBEDDINGS,
            **common.text_ids(tokenizer),
        },
        vision_config={
            "depth": 4,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": common.HIDDEN,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 256,  # a 16 × 16 grid, interpolated to each image
            "deepstack_visual_indexes": [1, 2],
        },
        tie_word_embeddings=common.TIE_WORD_EMBEDDINGS,
        **common.token_ids(tokenizer),
    )
    processor = common.processor(Qwen3VLProcessor, Qwen2VLImageProcessor, Qwen3VLVideoProcessor, tokenizer, chat_template, 16, **common.HALF_NORMALISE)
    common.save(Qwen3VLForConditionalGeneration, config, processor, out_dir)
