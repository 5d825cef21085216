"""Tiny Qwen3.5: `Qwen3_5ForConditionalGeneration` + `Qwen3VLProcessor` (what `qwen3_5` maps to).

Shaped like Qwen/Qwen3.5-0.8B (config.json): text layers of Gated DeltaNet linear attention with
full (gated) attention every fourth layer (`layer_types`, `full_attention_interval` 4: here
3 linear + 1 full), a causal convolution of kernel 4 before the linear attention, partial
rotary embedding (`partial_rotary_factor` 0.25) with interleaved M-RoPE (sections [11, 11, 10]);
a vision tower of patch 16, merge 2, temporal patch 2, without DeepStack.
transformers 5.23 runs the linear attention and the convolution in plain torch when
`flash-linear-attention` and `causal-conv1d` are not installed (they are not needed here).
Its vocabulary is Qwen3.5's (`Qwen3_5Tokenizer`, its own pre-tokenizer rule): the 14 Qwen2
special tokens, 12 that are not special (<tool_call> ... </think>), then 7 special audio tokens.
"""

from __future__ import annotations

from pathlib import Path

from demo.engines.tiny import common
from grounding.generations import QWEN2_SPECIALS

TEMPLATE = "qwen3.5.jinja"
AUDIO = ("<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>", "<tts_text_bos_single>", "<|audio_pad|>")
ADDED = (
    tuple((t, True) for t in QWEN2_SPECIALS)
    + tuple((t, False) for t in common.QWEN2_5_ADDED + common.QWEN3_ADDED)
    + tuple((t, True) for t in AUDIO)
)
LAYERS = 4
FULL_ATTENTION_INTERVAL = 4


def tokenizer_and_template():
    """Qwen3.5's tokenizer (its own pre-tokenizer rule and added tokens) with its chat template (Qwen4-Exp's too)."""
    from transformers import Qwen3_5Tokenizer
    from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX

    chat_template = common.template(TEMPLATE)
    return common.train_tokenizer(Qwen3_5Tokenizer, PRETOKENIZE_REGEX, ADDED, chat_template), chat_template


def build(out_dir: Path) -> None:
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3_5Config,
        Qwen3_5ForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer, chat_template = tokenizer_and_template()
    layer_types = [
        "full_attention" if (i + 1) % FULL_ATTENTION_INTERVAL == 0 else "linear_attention" for i in range(LAYERS)
    ]
    config = Qwen3_5Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": common.HIDDEN,
            "intermediate_size": 128,
            "num_hidden_layers": LAYERS,
            "layer_types": layer_types,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 64,  # a quarter of it rotates: 16, M-RoPE sections summing to 8
            "linear_conv_kernel_dim": 4,
            "linear_key_head_dim": 16,
            "linear_value_head_dim": 16,
            "linear_num_key_heads": 2,
            "linear_num_value_heads": 4,
            "max_position_embeddings": 32768,
            "rope_parameters": common.qwen3_5_rope(),
            "tie_word_embeddings": common.TIE_WORD_EMBEDDINGS,
            **common.text_ids(tokenizer),
        },
        vision_config=common.qwen3_5_vision(),
        tie_word_embeddings=common.TIE_WORD_EMBEDDINGS,
        **common.token_ids(tokenizer),
    )
    processor = common.processor(Qwen3VLProcessor, Qwen2VLImageProcessor, Qwen3VLVideoProcessor, tokenizer, chat_template, 16, **common.HALF_NORMALISE)
    common.save(Qwen3_5ForConditionalGeneration, config, processor, out_dir)
