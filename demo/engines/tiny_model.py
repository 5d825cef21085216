"""Build a tiny, randomly initialised Qwen2-VL checkpoint, offline, for tests and `--model tiny-random`.

The checkpoint has the real architecture (`Qwen2VLForConditionalGeneration`), the real
processor classes, the 14 Qwen2-VL special tokens in Qwen's order and a chat template that
renders exactly like Qwen2-VL-Instruct's. Only the sizes are small and the weights random, so
it answers with random text. It is written with `save_pretrained` and loaded back by the same
`AutoProcessor` / `AutoModelForImageTextToText` code as a real checkpoint.

The tokenizer is a byte-level BPE trained on `tiny_corpus.txt`, so it is the same on every
machine. Building takes about a second; the result is cached in a directory keyed by
`BUILD_VERSION` and the corpus text.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from demo.engines.base import RANDOM_WEIGHTS_MARKER
from grounding.generations import QWEN2_VL_MARKERS

BUILD_VERSION = "1"
CORPUS_PATH = Path(__file__).with_name("tiny_corpus.txt")
SEED = 1234

# The 14 special tokens of Qwen2-VL, in the order of their ids (151643..151656 in the real vocabulary).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    *QWEN2_VL_MARKERS,
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL-Instruct's chat template (chat_template.json of Qwen/Qwen2-VL-2B-Instruct), verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

BPE_VOCAB_SIZE = 1024  # before the special tokens
MIN_PIXELS = 56 * 56  # 4 visual tokens at the least
MAX_PIXELS = 28 * 28 * 64  # 64 visual tokens at the most: images stay cheap on a CPU


def default_cache_dir() -> Path:
    """Where built checkpoints live: $QWEN_CHAT_CACHE, else ~/.cache/qwen-vl-chat."""
    root = os.environ.get("QWEN_CHAT_CACHE") or Path.home() / ".cache" / "qwen-vl-chat"
    return Path(root)


def checkpoint_dir(cache_dir: Path | None = None) -> Path:
    """The directory the tiny checkpoint is (or will be) saved in; its name changes with the recipe."""
    digest = hashlib.sha256((BUILD_VERSION + CORPUS_PATH.read_text("utf-8")).encode()).hexdigest()[:12]
    return (cache_dir or default_cache_dir()) / f"tiny-random-qwen2-vl-{digest}"


def ensure_tiny_checkpoint(cache_dir: Path | None = None) -> Path:
    """Return the tiny checkpoint's directory, building it first if it is not there yet."""
    target = checkpoint_dir(cache_dir)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        build_tiny_checkpoint(staging)
        try:
            staging.rename(target)  # atomic: a half-built directory is never seen as a checkpoint
        except OSError:
            if not (target / "config.json").exists():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _train_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS_PATH.read_text("utf-8").splitlines(), trainer=trainer)
    trained = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]

    # Qwen2Tokenizer adds <|endoftext|> (its unk/eos/pad default) first, right after the BPE vocabulary.
    tokenizer = Qwen2Tokenizer(vocab=trained["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 32768
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    if ids != list(range(ids[0], ids[0] + len(SPECIAL_TOKENS))):
        raise RuntimeError(f"special tokens are not consecutive: {ids}")
    return tokenizer


def build_tiny_checkpoint(out_dir: Path) -> None:
    """Write a tiny random Qwen2-VL checkpoint (model, processor, tokenizer) into `out_dir`."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _train_tokenizer()
    token_id = tokenizer.convert_tokens_to_ids
    hidden = 64
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,  # head_dim 16
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": token_id("<|endoftext|>"),
            "eos_token_id": token_id("<|im_end|>"),
            "pad_token_id": token_id("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": hidden,  # the merger projects into the text model's width
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
    )
    torch.manual_seed(SEED)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=token_id("<|endoftext|>"),
        eos_token_id=[token_id("<|im_end|>"), token_id("<|endoftext|>")],
        pad_token_id=token_id("<|endoftext|>"),
        do_sample=False,
    )
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        video_processor=Qwen2VLVideoProcessor(size=size),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / RANDOM_WEIGHTS_MARKER).write_text(
        "The weights of this checkpoint are random: it answers with random text. Built by demo/engines/tiny_model.py.\n"
    )
