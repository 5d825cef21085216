"""Tiny Qwen2.5-VL: `Qwen2_5_VLForConditionalGeneration` + `Qwen2_5_VLProcessor`.

Shaped like Qwen/Qwen2.5-VL-3B-Instruct (config.json): a vision tower of window-attention
blocks (`window_size` 112 px) with full attention in the last block of each group
(`fullatt_block_indexes` [7, 15, 23, 31] of 32; here [1, 3] of 4), SiLU MLPs, patch 14, merge 2,
temporal patch 2, `tokens_per_second` 2 (the video time step), M-RoPE sections [16, 24, 24].
Its vocabulary is Qwen2.5's: the 14 Qwen2 special tokens, then 8 that are not special
(<tool_call> ... <|file_sep|>).
"""

from __future__ import annotations

from pathlib import Path

from demo.engines.tiny import common
from grounding.generations import QWEN2_SPECIALS

TEMPLATE = "qwen2-vl.jinja"  # Qwen2.5-VL's official chat_template.json is Qwen2-VL's, verbatim
ADDED = tuple((t, True) for t in QWEN2_SPECIALS) + tuple((t, False) for t in common.QWEN2_5_ADDED)


def build(out_dir: Path) -> None:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    chat_template = common.template(TEMPLATE)
    tokenizer = common.train_tokenizer(Qwen2Tokenizer, PRETOKENIZE_REGEX, ADDED, chat_template)
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": common.HIDDEN,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,  # head_dim 16
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "tie_word_embeddings": common.TIE_WORD_EMBEDDINGS,
            **common.text_ids(tokenizer),
        },
        vision_config={
            "depth": 4,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "hidden_act": "silu",
            "out_hidden_size": common.HIDDEN,  # the merger projects into the text model's width
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1, 3],
            "tokens_per_second": 2,
        },
        tie_word_embeddings=common.TIE_WORD_EMBEDDINGS,
        **common.token_ids(tokenizer),
    )
    processor = common.processor(Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor, tokenizer, chat_template, 14)
    common.save(Qwen2_5_VLForConditionalGeneration, config, processor, out_dir)
