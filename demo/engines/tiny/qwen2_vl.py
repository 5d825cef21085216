"""Tiny Qwen2-VL: `Qwen2VLForConditionalGeneration` + `Qwen2VLProcessor`, `--model tiny-random`.

Shaped like Qwen/Qwen2-VL-2B-Instruct (config.json: M-RoPE sections [16, 24, 24] of head_dim
128, vision patch 14, merge 2, temporal patch 2), only smaller. Its vocabulary adds the 14
Qwen2 special tokens and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from demo.engines.tiny import common
from grounding.generations import QWEN2_SPECIALS

TEMPLATE = "qwen2-vl.jinja"
ADDED = tuple((t, True) for t in QWEN2_SPECIALS)


def build(out_dir: Path) -> None:
    from transformers import (
        Qwen2Tokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    chat_template = common.template(TEMPLATE)
    tokenizer = common.train_tokenizer(Qwen2Tokenizer, PRETOKENIZE_REGEX, ADDED, chat_template)
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": common.HIDDEN,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,  # head_dim 16
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            **common.text_ids(tokenizer),
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": common.HIDDEN,  # the merger projects into the text model's width
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        **common.token_ids(tokenizer),
    )
    processor = common.processor(Qwen2VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor, tokenizer, chat_template, 14)
    common.save(Qwen2VLForConditionalGeneration, config, processor, out_dir)
