"""Where and in what precision the local engine computes: device, dtype, int8 or int4 quantization.

`resolve_*` turn the flags' values ('auto' included) into a choice for this machine, with one
sentence (`ModelLoadError`) for a choice it cannot honour; `quantize_model` swaps a loaded model's
linear layers for int8 ones (`demo.engines.local.int8`) or, in the language model, 4-bit ones
(`demo.engines.local.int4`); `guard_float16` keeps the vision encoder out of float16's range problems.

What it does not know: checkpoints, prompts, generation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from demo.engines.base import ModelLoadError
from demo.engines.local.int4 import Int4Linear, int4_available, int4_fits
from demo.engines.local.int8 import Int8Linear, int8_available, quantize_linears
from demo.record.sessions import release_memory

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
QUANTIZE_CHOICES = ("none", "int8", "int4", "auto")
# With --quantize int8, the vision encoder's linear layers are int8 too: on the 2B shape this
# halves a new picture's time to first token for a logit error no larger than the language
# model's own int8 error (bench/results/quantize-2b.txt, `python -m bench.quantize --shape 2b`).
INT8_VISION = True


def resolve_device(device: str) -> str:
    """'auto' is CUDA when a GPU is visible, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for, but torch sees no CUDA GPU on this machine")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """'auto': bfloat16 on GPUs (float16 where bf16 is missing); float32 on the CPU.

    On CPUs without bfloat16 instructions, bf16 matmuls are emulated: measured on this project's
    2-core CPU with torch 2.14.1, a 2B model's vision encoder took 147 s on one 448×448 image in
    bfloat16 against 32 s in float32 (float32 needs twice the memory: 9.4 GiB for the 2B model).
    """
    if dtype != "auto":
        return DTYPES[dtype]
    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def resolve_quantize(quantize: str, device: str) -> str:
    """'auto': int8 on the CPU (when this torch build has the kernels), none on a GPU."""
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    if quantize == "auto":
        return "int8" if device == "cpu" and int8_available() else "none"
    if quantize in ("int8", "int4") and device != "cpu":
        raise ModelLoadError(f"--quantize {quantize} runs on the CPU only: use --device cpu, or --quantize none (or auto) on a GPU")
    if quantize in ("int8", "int4") and not int8_available():  # int4 reads pictures and prompts' weights in int8
        raise ModelLoadError(f"--quantize {quantize} needs oneDNN's int8 kernels, which this torch build lacks (x86 CPUs have them)")
    if quantize == "int4" and not int4_available():
        raise ModelLoadError("--quantize int4 needs torch's CPU int4 kernels (torch 2.5 or later)")
    return quantize


def _int4_or_int8(linear):
    """A 4-bit layer where its inputs make whole groups, else an int8 one."""
    return Int4Linear(linear) if int4_fits(linear) else Int8Linear(linear)


class Bfloat16Embedding(nn.Module):
    """Token embeddings kept in bfloat16 and looked up as float32, for the quantized modes.

    Qwen's checkpoints store them in bfloat16, so nothing is lost: the float32 copy only doubled
    them (0.87 GiB for the 2B model's 151,936 × 1,536 table, against 0.43). The table is a plain
    attribute, so that the model's `.to(float32)` leaves it as it is (a parameter would be cast);
    `weight` reads it as transformers expects. CPU only, as the quantized modes are.
    """

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        # A copy: a checkpoint read in its own dtype may hand out views of the file's memory map, and
        # one kept view keeps the whole mapping resident (3.2 GiB more after loading the 2B model).
        self._hold(embedding.weight.detach().to(torch.bfloat16, copy=True), embedding.padding_idx)

    def _hold(self, table: torch.Tensor, padding_idx: int | None) -> None:
        (self.num_embeddings, self.embedding_dim), self.padding_idx = table.shape, padding_idx
        self.table = table

    @classmethod
    def from_stored(cls, tensors: dict[str, torch.Tensor], padding_idx: int | None) -> Bfloat16Embedding:
        """The embedding `stored()` came from (`demo.engines.local.quantized_store`)."""
        embedding = cls.__new__(cls)
        nn.Module.__init__(embedding)
        embedding._hold(tensors["table"], padding_idx)
        return embedding

    def stored(self) -> dict[str, torch.Tensor]:
        """What rebuilds it (with `padding_idx`): the bfloat16 table."""
        return {"table": self.table}

    @property
    def weight(self) -> torch.Tensor:
        return self.table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return functional.embedding(ids, self.table, self.padding_idx).to(torch.float32)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, bfloat16 table"


def quantize_model(model, *, vision: bool | None = None, bits: int = 8) -> None:
    """Int8 linear layers (`demo.engines.local.int8`) in the language model and its output layer, and in
    the vision encoder when `vision` (default: `INT8_VISION`); with `bits=4` the language model's and
    the output layer's are 4-bit (`demo.engines.local.int4`), the vision encoder's int8 (it reads
    hundreds of patches at once, where the 4-bit kernel is slow). Embeddings, norms and the patch
    embedding keep the model's dtype, but the token embeddings stay bfloat16 (`Bfloat16Embedding`)."""
    if bits not in (8, 4):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    make = _int4_or_int8 if bits == 4 else Int8Linear
    language = model.model.language_model
    for part in [*language.layers, language]:  # a layer at a time (its float copies handed back), then the rest
        quantize_linears(part, make)
        release_memory()
    model.lm_head = make(model.lm_head)  # its own copy: the embedding it may be tied to is kept apart
    language.embed_tokens = Bfloat16Embedding(language.embed_tokens)
    if INT8_VISION if vision is None else vision:
        quantize_linears(model.model.visual)
    release_memory()


def guard_float16(model) -> None:
    """In float16 (GPUs without bfloat16, e.g. T4), run the vision encoder in float32.

    Qwen VL checkpoints are trained in bfloat16, whose range float16 lacks: vision towers have
    been reported to overflow float16 (Qwen2.5-VL in ollama/ollama#18070, Qwen3-VL's MLP in
    unslothai/unsloth-zoo#720) and Qwen2 language models to produce NaN with eager attention
    (huggingface/transformers#33294, #33317; sdpa stays finite). The encoder is 0.6-0.7 B
    parameters: float32 costs about 1.3 GB more than float16. Its output is cast to the language
    model's dtype by the model itself.
    """
    model.model.visual.to(torch.float32)
