"""What every tiny checkpoint shares: the trained tokenizer, the chat templates, the sizes, saving.

The tokenizer is a byte-level BPE trained on `corpus.txt` with the generation's own
pre-tokenizer rule, so it is the same on every machine; the training runs once per rule in a
process (Qwen2-VL, Qwen2.5-VL and Qwen3-VL share one, Qwen3.5 has its own). Each generation then
adds its real special tokens, in the real order and with the real `special` flags, right after
the BPE vocabulary: the ids differ from the real ones (151643... or 248044...), the order does not.

The chat templates in `templates/` are the official files, byte for byte (sources in
`TEMPLATE_SOURCES`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

from demo.engines.base import RANDOM_WEIGHTS_MARKER

HERE = Path(__file__).resolve().parent
CORPUS_PATH = HERE / "corpus.txt"
TEMPLATES = HERE / "templates"
SEED = 1234
BPE_VOCAB_SIZE = 1024  # asked of the trainer; the small corpus gives about 820
HIDDEN = 64  # the text model's width: forward passes stay fast on a CPU
MIN_TOKENS = 4  # visual tokens per image, at the least
MAX_TOKENS = 64  # ... and at the most: images stay cheap on a CPU
# Output embeddings untied from the input ones, as in the larger checkpoints (Qwen2.5-VL-7B,
# Qwen3-VL-8B). The small ones tie them, but a random model with tied embeddings repeats one
# token (a newline) forever, and tests need answers with visible text.
TIE_WORD_EMBEDDINGS = False

# Where each official chat template was read. Qwen2.5-VL's chat_template.json holds the very
# same string as Qwen2-VL's, so both use templates/qwen2-vl.jinja.
TEMPLATE_SOURCES = {
    "qwen2-vl.jinja": "Qwen/Qwen2-VL-2B-Instruct and Qwen/Qwen2.5-VL-3B-Instruct, chat_template.json on the "
    "Hugging Face Hub (identical strings); read as copied in github.com/xorbitsai/inference "
    "xinference/model/llm/llm_family.json (qwen2-vl-instruct, qwen2.5-vl-instruct)",
    "qwen3-vl-instruct.jinja": "Qwen/Qwen3-VL-2B-Instruct, chat_template.json on the Hugging Face Hub; read as "
    "copied in github.com/xorbitsai/inference xinference/model/llm/llm_family.json (Qwen3-VL-Instruct)",
    "qwen3-vl-thinking.jinja": "Qwen/Qwen3-VL-2B-Thinking, chat_template.json on the Hugging Face Hub; read as "
    "copied in github.com/xorbitsai/inference xinference/model/llm/llm_family.json (Qwen3-VL-Thinking)",
    "qwen3.5.jinja": "Qwen/Qwen3.5-4B, chat_template.jinja on the Hugging Face Hub; read as copied in "
    "github.com/ggml-org/llama.cpp models/templates/Qwen3.5-4B.jinja, byte-identical to xinference's qwen3.5",
}

# Qwen2.5's vocabulary adds 8 tokens that are not special (151657..151664).
QWEN2_5_ADDED = ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")
# Qwen3's adds 4 more that are not special either (151665..151668).
QWEN3_ADDED = ("<tool_response>", "</tool_response>", "<think>", "</think>")


def template(name: str) -> str:
    """An official chat template from `templates/`, exactly as published."""
    return (TEMPLATES / name).read_text("utf-8")


@functools.lru_cache(maxsize=4)
def _trained_bpe(pretokenize_regex: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE (vocabulary, merges) trained on the corpus with this pre-tokenizer rule."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pretokenize_regex), behavior="isolated", invert=False),
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
    return trained["vocab"], merges


def train_tokenizer(tokenizer_class, pretokenize_regex: str, added: Sequence[tuple[str, bool]], chat_template: str):
    """A `tokenizer_class` on the trained BPE with `added` (token, special) appended in order.

    The first added token must be <|endoftext|>: the Qwen tokenizer classes add it themselves (their
    unk/pad default). eos is <|im_end|>, pad <|endoftext|>, no bos, as in the real Instruct checkpoints.
    """
    from tokenizers import AddedToken

    vocab, merges = _trained_bpe(pretokenize_regex)
    tokenizer = tokenizer_class(vocab=dict(vocab), merges=list(merges))
    for content, special in added[1:]:
        if special:  # listed among the additional special tokens, like the real tokenizer configs do
            tokenizer.add_special_tokens({"additional_special_tokens": [content]}, replace_extra_special_tokens=False)
        else:
            tokenizer.add_tokens([AddedToken(content, special=False, normalized=False)])
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = chat_template
    tokenizer.model_max_length = 32768
    contents = [content for content, _ in added]
    ids = tokenizer.convert_tokens_to_ids(contents)
    if ids != list(range(ids[0], ids[0] + len(contents))):
        raise RuntimeError(f"the added tokens are not consecutive: {ids}")
    flags = {t.content: t.special for t in tokenizer.added_tokens_decoder.values()}
    if [flags[c] for c in contents] != [special for _, special in added]:
        raise RuntimeError("the added tokens' special flags differ from the recipe")
    return tokenizer


def pixel_bounds(factor: int) -> dict[str, int]:
    """The processors' `size`: between MIN_TOKENS and MAX_TOKENS visual tokens of factor² pixels."""
    return {"shortest_edge": MIN_TOKENS * factor * factor, "longest_edge": MAX_TOKENS * factor * factor}


#: Qwen3-VL's and Qwen3.5's image and video processors normalise to [-1, 1] (their preprocessor configs).
HALF_NORMALISE = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


def processor(
    processor_class, image_processor_class, video_processor_class, tokenizer, chat_template: str, patch_size: int, **normalise
):
    """The generation's processor: its image and video processors at `pixel_bounds` of patch × merge (2)."""
    size = pixel_bounds(patch_size * 2)
    return processor_class(
        image_processor=image_processor_class(size=size, patch_size=patch_size, **normalise),
        video_processor=video_processor_class(size=size, patch_size=patch_size, **normalise),
        tokenizer=tokenizer,
        chat_template=chat_template,
    )


def token_ids(tokenizer) -> dict:
    """The config's ids of the vision tokens."""
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def text_ids(tokenizer) -> dict:
    """bos/eos/pad ids for a text config (Qwen's configs: bos = <|endoftext|>, eos = <|im_end|>)."""
    ids = tokenizer.convert_tokens_to_ids
    return {"bos_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"), "pad_token_id": ids("<|endoftext|>")}


def save(model_class, config, processor, out_dir: Path) -> None:
    """Initialise `model_class(config)` with the fixed seed, greedy, and save it with `processor`."""
    import torch
    from transformers import GenerationConfig

    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(SEED)
    model = model_class(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=ids("<|endoftext|>"),
        do_sample=False,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / RANDOM_WEIGHTS_MARKER).write_text(
        "The weights of this checkpoint are random: it answers with random text. Built by demo/engines/tiny/.\n"
    )


def qwen3_5_rope() -> dict:
    """Qwen3.5's text rotary settings (Qwen4-Exp's too): a quarter of a 64-wide head rotates, M-RoPE interleaved."""
    return {
        "rope_type": "default",
        "rope_theta": 10000000.0,
        "partial_rotary_factor": 0.25,
        "mrope_section": [3, 3, 2],
        "mrope_interleaved": True,
    }


def qwen3_5_vision() -> dict:
    """Qwen3.5's vision tower, small (Qwen4-Exp has the same one): patch 16, merge 2, no DeepStack."""
    return {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": HIDDEN,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 256,
    }
