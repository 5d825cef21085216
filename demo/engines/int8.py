"""Int8 linear layers for the CPU: int8 weights (one scale per output channel), int8 activations
(one scale per token), int32 accumulation, through FBGEMM's quantized linear (oneDNN's where
this torch build lacks it).

`quantize_linears(module)` swaps every `nn.Linear` inside `module` for an `Int8Linear`, one at a
time, so the float weights are freed as the int8 ones arrive. An `Int8Linear` reads a quarter of
the bytes of a float32 one per token (decode is bound by memory bandwidth) and uses the CPU's
int8 dot-product units (VNNI, AMX) for prefills.

Why per-token scales and not torch's `quantize_dynamic`: its activations share one scale per
call, computed over every token fed together, so a token's result depends on the tokens beside
it, and a session's cached prefix (computed in other calls) is off from a re-prefill by int8
steps. Here each token is quantized on its own and the int8 products are summed exactly in int32
(the op gets an activation scale of 1.0 and the token's scale is applied after), so a token's
output is the same bits whatever else is in the batch. The model's other parts stay in float32,
where attention's last bits can differ between a prefill and a decode step (as in the float32
model); an activation that falls right at an int8 rounding boundary turns such a difference into
one rounding step. So KV reuse is exact in the linear layers, bitwise on the tiny checkpoint, and
within a fraction of int8's own error on the 2B shape (`python -m bench.quantize --shape 2b`).

Two kernels, the same bits: both are handed the token's int8 values with an activation scale of
1.0 and return float32(int32 sum) x weight scale (`test_the_two_int8_kernels_give_the_same_bits`).
FBGEMM's reads the weights faster for one token (decode): measured on this project's 2-CPU
machine with the 2B shape's 196 layers, 57 ms a token against oneDNN's 72 ms (float32: 176 ms).
Its weight has to be made with torch's quantized-tensor functions, which warn that they are
deprecated; when they are gone, oneDNN's kernel takes over.

What it does not know: how much quality a trained model loses (the project's figures are on
random weights; trained models have outlier activations that per-token int8 handles worse).
CPU only: x86 builds of torch have both kernels; most others have neither.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

# A token whose activations are all zero gets this scale instead of 0 (its int8 values are 0 anyway).
_TINY = torch.finfo(torch.float32).tiny
_ZERO_POINT = 128  # activations travel as uint8: value + 128


def fbgemm_available() -> bool:
    """True when this torch build has FBGEMM's quantized linear with float32 output."""
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(
        torch.ops.quantized, "linear_with_input_q_dq_qweight_dq_output_fp32"
    )


def onednn_available() -> bool:
    return hasattr(torch.ops, "onednn") and hasattr(torch.ops.onednn, "qlinear_pointwise")


def int8_available() -> bool:
    """True when this torch build has an int8 linear kernel (x86 CPU builds have two)."""
    return fbgemm_available() or onednn_available()


class Int8Linear(nn.Module):
    """An `nn.Linear` (float32 in, float32 out) computed in int8; built from a float one."""

    def __init__(self, linear: nn.Linear, kernel: str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().to(torch.float32)
        scale = weight.abs().amax(dim=1).clamp(min=_TINY) / 127
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.kernel = kernel or ("fbgemm" if fbgemm_available() else "onednn")
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero_point", torch.zeros(self.out_features, dtype=torch.int32))
        # The packed weight is an opaque kernel object: kept as a plain attribute, out of state_dict.
        if self.kernel == "fbgemm":
            with warnings.catch_warnings():  # "quantized tensor creation functions ... are deprecated"
                warnings.filterwarnings("ignore", category=UserWarning)
                weight = torch._make_per_channel_quantized_tensor(
                    quantized, scale.double(), torch.zeros(self.out_features, dtype=torch.long), 0
                )
            self.packed = torch.ops.quantized.linear_prepack(weight, None)
        elif self.kernel == "onednn":
            self.packed = torch.ops.onednn.qlinear_prepack(quantized, None)
        else:
            raise ValueError(f"kernel must be fbgemm or onednn, got {kernel!r}")
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.float32), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.float32)
        scale = torch.linalg.vector_norm(rows, float("inf"), dim=1, keepdim=True).clamp_(min=_TINY).div_(127)
        values = torch.div(rows, scale).round_()  # symmetric int8 values, |v| <= 127, held as floats
        # Both kernels get them as uint8 around a zero point of 128, which they subtract in int32:
        # the sums are the same bits as with int8 activations. (oneDNN's int8-activation kernel is
        # ~100x slower for one token into 256 or fewer outputs, measured with its 3.12 on this CPU.)
        if self.kernel == "fbgemm":  # it makes the uint8 values itself: round(v / 1.0) + 128
            out = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(values, 1.0, _ZERO_POINT, self.packed)
        else:
            out = torch.ops.onednn.qlinear_pointwise(
                values.add_(_ZERO_POINT).to(torch.uint8), 1.0, _ZERO_POINT, self.packed, self.weight_scale,
                self.weight_zero_point, None, 1.0, 0, torch.float32, "none", [], "",
            )  # fmt: skip
        out.mul_(scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8 ({self.kernel})"


def quantize_linears(module: nn.Module) -> int:
    """Replace every `nn.Linear` under `module` (itself included) with an `Int8Linear`; how many."""
    if isinstance(module, nn.Linear):
        raise ValueError("pass the module that holds the linear layers, not a layer itself")
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, Int8Linear(child))
                count += 1
    return count


def int8_bytes(module: nn.Module) -> int:
    """Bytes of the int8 weights under `module` (the packed tensors are not parameters)."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, Int8Linear))
