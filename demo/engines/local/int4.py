"""4-bit linear layers for the CPU: weights in 4 bits with a scale and an offset per group of 128
inputs, bfloat16 activations, through torch's own CPU kernel (`aten._weight_int4pack_mm_for_cpu`).

An `Int4Linear` reads half the bytes of an `Int8Linear` per token: decoding, which is bound by
memory bandwidth, gets faster (`python -m bench.quantize --shape 2b --variants int8 int4`). The
kernel is fast only with bfloat16 activations (float32 ones take a path about 30 times slower on
an AVX-512 CPU, torch 2.14.1), so a layer's input is rounded to bfloat16 (8 bits of mantissa, an
error about as large as int8's per-token activations) and its output comes back as float32.

What it is slow at: many tokens at once. For a 300-token prompt the kernel costs about 0.75 ms
per token and layer on the 2B shape, 5-6 times oneDNN's int8 (it does not reuse a weight across
rows the way a GEMM does), so prompts and pictures are read more slowly than in int8; the
vision encoder, all prompt, stays in int8 (`demo.engines.local.precision`).

Each token's row is computed on its own, so a session's cached prefix matches a re-prefill
(`tests/test_quantize.py`). Not known: how much a trained model loses in 4 bits (the project's
figures are on random weights).
"""

from __future__ import annotations

import torch
from torch import nn

GROUP_SIZE = 128  # inputs per scale and offset: llama.cpp's Q4_K uses 32-weight blocks in 256-weight super-blocks
_SMALLER_GROUPS = (64, 32)  # for layers whose inputs are not a multiple of 128 (the kernel takes 32, 64, 128, 256)
_LEVELS = 15  # 4 bits: 0..15; the kernel reads a weight as (q - 8) * scale + offset8, offset8 = offset + 8 * scale
_INNER_K_TILES = 2  # the packing's tiling along the input; the CPU kernel's speed hardly depends on it


def int4_available() -> bool:
    """True when this torch build has the CPU int4 kernels (torch 2.5 and later)."""
    return all(hasattr(torch.ops.aten, op) for op in ("_weight_int4pack_mm_for_cpu", "_convert_weight_to_int4pack_for_cpu"))


def group_size(in_features: int) -> int | None:
    """Inputs per group for a layer of `in_features` inputs: `GROUP_SIZE`, or a smaller size that divides them."""
    return next((size for size in (GROUP_SIZE, *_SMALLER_GROUPS) if in_features % size == 0), None)


def int4_fits(linear: nn.Linear) -> bool:
    """Can this layer be packed: its inputs a whole number of groups, its outputs of 16 (the packing's)."""
    return group_size(linear.in_features) is not None and linear.out_features % 16 == 0


class Int4Linear(nn.Module):
    """An `nn.Linear` (float32 in, float32 out) with 4-bit weights; built from a float one, or from
    what `stored()` handed out (`from_stored`, for `demo.engines.local.quantized_store`)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        size = group_size(linear.in_features)
        if not int4_fits(linear):
            raise ValueError(f"{linear.in_features} inputs in 32-input groups and {linear.out_features} outputs by 16 do not both fit")
        out_features = linear.out_features
        weight = linear.weight.detach().to(torch.float32).reshape(out_features, -1, size)
        low, high = weight.amin(dim=-1), weight.amax(dim=-1)
        scale = ((high - low) / _LEVELS).clamp(min=torch.finfo(torch.float32).tiny)
        levels = torch.round((weight - low[..., None]) / scale[..., None]).clamp_(0, _LEVELS).to(torch.int32)
        del weight
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels.reshape(out_features, -1), _INNER_K_TILES)
        # [groups, outputs, (scale, offset8)] in bfloat16, as the kernel reads them.
        scales_and_offsets = torch.stack([scale, low + 8 * scale], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.float32, copy=True)
        self._hold(packed, scales_and_offsets, bias, linear.in_features)

    def _hold(self, packed: torch.Tensor, scales_and_offsets: torch.Tensor, bias: torch.Tensor | None, in_features: int) -> None:
        groups, self.out_features, _ = scales_and_offsets.shape
        self.in_features, self.group_size = in_features, in_features // groups
        self.register_buffer("packed", packed)
        # A plain attribute, so that the model's `.to(float32)` leaves it alone (a buffer would be cast); CPU only anyway.
        self.scales_and_offsets = scales_and_offsets
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @classmethod
    def from_stored(cls, tensors: dict[str, torch.Tensor], in_features: int) -> Int4Linear:
        """The layer `stored()` came from, on a CPU of the same kind (the packing's layout is torch's
        and the CPU's: AVX-512 and AVX2 builds pack in blocks of 64 and 32 outputs)."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._hold(tensors["packed"], tensors["scales_and_offsets"], tensors.get("bias"), in_features)
        return layer

    def stored(self) -> dict[str, torch.Tensor]:
        """What rebuilds this layer (with `in_features`): the packed 4-bit weights, scales and offsets, the bias; no copies."""
        out = {"packed": self.packed, "scales_and_offsets": self.scales_and_offsets}
        return out if self.bias is None else {**out, "bias": self.bias.detach()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, self.group_size, self.scales_and_offsets).to(torch.float32)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int4 (groups of {self.group_size})"


def int4_bytes(module: nn.Module) -> int:
    """Bytes of the 4-bit weights and their scales under `module`."""
    return sum(m.packed.numel() + 2 * m.scales_and_offsets.numel() for m in module.modules() if isinstance(m, Int4Linear))
