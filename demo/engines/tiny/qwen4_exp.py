"""Tiny Qwen4-Exp: `Qwen4ExpForConditionalGeneration` + `Qwen3VLProcessor` (what `qwen4_exp` maps to).

transformers 5.25's `models/qwen4_exp/` (the architecture published as Qwen3.8-Flash-Next), its
whole structure, small: text layers of Gated DeltaNet linear attention with attention every fourth
layer (here 3 linear + 1), that attention a QSA one (`indexed_attention`: an indexer pools keys in
blocks of `indexer_compress_ratio` and each query attends to the top blocks within
`indexer_budget` tokens, plus the unfinished block: 16 of a prompt's hundreds here, so the
selection is exercised); a mixture of experts with a shared expert in every layer; four residual
streams mixed by hyper-connections (`hc_count`); and a Per-Layer Embedding on one linear layer
(hashed 2- and 3-gram embeddings and a dilated convolution: with it, each linear layer's cache keeps
three states, the n-gram context among them). Partial rotary embedding with interleaved M-RoPE as
in Qwen3.5; the vision tower is Qwen3.5's (patch 16, merge 2, temporal patch 2, no DeepStack).

Its tokenizer is Qwen3.5's class (`Qwen3_5Tokenizer`, tokenization_auto.py) and its config's
vision token ids are Qwen3.5's (248053..248057 of the same 248320 vocabulary): the added tokens
are Qwen3.5's, in the same order. transformers ships no chat template for it and the
checkpoint's own could not be read here, so this uses Qwen3.5-4B's: the template of the processor
family it shares (`Qwen3VLProcessor`), which writes the `Picture N:` labels, the `<think>` switch
(`enable_thinking`) and the vision tokens that processor expects.
"""

from __future__ import annotations

from pathlib import Path

from demo.engines.tiny import common, qwen3_5

TEMPLATE = qwen3_5.TEMPLATE
ADDED = qwen3_5.ADDED  # its tokenizer is Qwen3.5's
LAYERS = 4
FULL_ATTENTION_INTERVAL = 4


def build(out_dir: Path) -> None:
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
        Qwen4ExpConfig,
        Qwen4ExpForConditionalGeneration,
    )

    tokenizer, chat_template = qwen3_5.tokenizer_and_template()
    # Written as the real checkpoint writes them: its config says "full_attention" for the layers
    # transformers runs as "indexed_attention" (configuration_qwen4_exp.py, Qwen4ExpTextConfig.__post_init__).
    layer_types = [
        "full_attention" if (i + 1) % FULL_ATTENTION_INTERVAL == 0 else "linear_attention" for i in range(LAYERS)
    ]
    config = Qwen4ExpConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": common.HIDDEN,
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
            "num_experts": 8,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 32,
            "hc_count": 4,  # the real number of residual streams
            "hc_lowrank": 8,
            "ple_layer_ids": [2],  # one-indexed: the second layer, a linear one
            "ple_embed_dim": 32,
            "ple_conv_kernel_size": 4,
            "ngram_size": 3,
            "heads_per_ngram": 2,
            "ngram_vocab_size_base": 100,  # the real tables hold about 20 M rows per head
            "make_ngram_vocab_size_divisible_by": 4,
            "split_ngram_parts": 4,  # saved in 4 shards, as the real one in 512
            "indexer_n_heads": 2,
            "indexer_kv_heads": 1,  # the only value QSA allows
            "indexer_head_dim": 16,  # at least the rotary part of an attention head
            "indexer_budget": 16,
            "indexer_compress_ratio": 4,
            "max_position_embeddings": 32768,
            # Five times the real 0.02: at 0.02 the four mixed residual streams drown the linear layers'
            # states (zeroing one moved the logits by 1e-5, under the KV-reuse tests' tolerance); here each counts
            "initializer_range": 0.1,
            "rope_parameters": common.qwen3_5_rope(),
            "tie_word_embeddings": common.TIE_WORD_EMBEDDINGS,
            **common.text_ids(tokenizer),  # PLE needs the eos id: it pads n-grams with it
        },
        vision_config=common.qwen3_5_vision(),
        tie_word_embeddings=common.TIE_WORD_EMBEDDINGS,
        **common.token_ids(tokenizer),
    )
    processor = common.processor(Qwen3VLProcessor, Qwen2VLImageProcessor, Qwen3VLVideoProcessor, tokenizer, chat_template, 16, **common.HALF_NORMALISE)

    def model(config):
        import torch

        initialised = Qwen4ExpForConditionalGeneration(config)
        # transformers starts the PLE convolution at zero (Qwen4ExpPreTrainedModel._init_weights): its cache
        # state would change nothing. Trained weights are not zero: random ones make that state count.
        for layer in initialised.model.language_model.layers:
            if layer.ple is not None:
                torch.nn.init.normal_(layer.ple.conv1d.weight, std=config.text_config.initializer_range)
        return initialised

    common.save(model, config, processor, out_dir)
