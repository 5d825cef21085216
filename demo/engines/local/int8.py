"""Int8 linear layers for the CPU: int8 weights (one scale per output channel), int8 activations
(one scale per token), int32 accumulation, through oneDNN's quantized linear.

`quantize_linears(module)` swaps every `nn.Linear` inside `module` for an `Int8Linear`, one at a
time, so the float weights are freed as the int8 ones arrive. An `Int8Linear` reads a quarter of
the bytes of a float32 one per token (decode is bound by memory bandwidth) and uses the CPU's
int8 dot-product units (VNNI, AMX) for prefills.

Layers that read the same input (an attention's `q_proj`, `k_proj`, `v_proj`; an MLP's
`gate_proj`, `up_proj`) become one `Int8Linear` over their stacked weights, read through an
`Int8Part` each: one quantization of the input and one larger kernel call instead of two or three,
with the same bits (sums and scales are per output). On the 2B shape a decode step went from 109
to 101 ms.

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

What it does not know: how much quality a trained model loses (the project's figures are on
random weights; trained models have outlier activations that per-token int8 handles worse).
CPU only: `torch.ops.onednn` is missing from builds without oneDNN (most non-x86 CPUs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# A token whose activations are all zero gets this scale instead of 0 (its int8 values are 0 anyway).
_TINY = torch.finfo(torch.float32).tiny
_ZERO_POINT = 128  # activations travel as uint8: value + 128


def int8_available() -> bool:
    """True when this torch build has oneDNN's int8 linear (x86 CPU builds do)."""
    return hasattr(torch.ops, "onednn") and hasattr(torch.ops.onednn, "qlinear_pointwise")


class Int8Linear(nn.Module):
    """An `nn.Linear` (float32 in, float32 out) computed in int8; built from a float one, or from
    what `stored()` handed out (`from_stored`, for `demo.engines.local.quantized_store`)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().to(torch.float32)
        scale = weight.abs().amax(dim=1).clamp(min=_TINY) / 127
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.float32, copy=True)
        self._hold(quantized, scale, bias)

    def _hold(self, quantized: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.out_features, self.in_features = quantized.shape
        # The packed weight is an opaque oneDNN tensor: kept as a plain attribute, out of state_dict.
        self.packed = torch.ops.onednn.qlinear_prepack(quantized, None)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero_point", torch.zeros(self.out_features, dtype=torch.int32))
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @classmethod
    def from_stored(cls, tensors: dict[str, torch.Tensor]) -> Int8Linear:
        """The layer `stored()` came from: its int8 weights packed again for this CPU, the same bits."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._hold(tensors["weight"], tensors["weight_scale"], tensors.get("bias"))
        return layer

    def stored(self) -> dict[str, torch.Tensor]:
        """What rebuilds this layer: the int8 weights [out, in], their scales and the bias.

        The weights are read back from oneDNN's packing (`to_dense` reorders it to a plain layout,
        bit for bit), a new tensor at each call: the layer itself keeps no second copy. The packing
        is not stored: its layout is the CPU's (oneDNN picks it), and packing again is cheap.
        """
        out = {"weight": self.packed.to_dense().t().contiguous(), "weight_scale": self.weight_scale}
        return out if self.bias is None else {**out, "bias": self.bias.detach()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.float32)
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=_TINY).div_(127)  # = vector_norm(inf), 5-7x faster over a prompt here
        # Symmetric int8 values (|rows / scale| <= 127) stored as uint8 around a zero point of 128:
        # oneDNN subtracts it in int32, so the sums are the same bits as with int8 activations, but
        # its int8-activation kernel is ~100x slower for one token into 256 or fewer outputs
        # (Qwen2-VL-2B's k_proj and v_proj; measured with torch 2.14's oneDNN 3.12 on this CPU).
        quantized = torch.div(rows, scale).round_().add_(_ZERO_POINT).to(torch.uint8)
        out = torch.ops.onednn.qlinear_pointwise(
            quantized, 1.0, _ZERO_POINT, self.packed, self.weight_scale, self.weight_zero_point,
            None, 1.0, 0, torch.float32, "none", [], "",
        )
        out.mul_(scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


class Int8Group(nn.Module):
    """Linear layers that read the same input, as one `Int8Linear` (or another kind: `make`); its
    `Int8Part`s take their share.

    The first part called computes every part's output for that input and keeps them until each
    part has taken its own, or another input arrives; a part called with another input (or the
    same tensor changed in place) gets a fresh computation, so a model that does not feed the
    parts one input is slower, never wrong.
    """

    def __init__(self, linears: list[nn.Linear], make: Callable[[nn.Linear], nn.Module] = Int8Linear) -> None:
        super().__init__()
        first = linears[0]
        if any(linear.in_features != first.in_features for linear in linears):
            raise ValueError("the layers of a group must read inputs of one width")
        stacked = nn.Linear(first.in_features, sum(linear.out_features for linear in linears), bias=first.bias is not None)
        with torch.no_grad():
            stacked.weight.copy_(torch.cat([linear.weight.detach() for linear in linears]))
            if stacked.bias is not None:
                biases = [linear.bias if linear.bias is not None else torch.zeros(linear.out_features) for linear in linears]
                stacked.bias.copy_(torch.cat([b.detach() for b in biases]))
        self._hold(make(stacked), [linear.out_features for linear in linears])

    @classmethod
    def of(cls, linear: nn.Module, sizes: list[int]) -> Int8Group:
        """A group over an already stacked layer (`linear`, its outputs `sizes` parts in order)."""
        group = cls.__new__(cls)
        nn.Module.__init__(group)
        group._hold(linear, sizes)
        return group

    def _hold(self, linear: nn.Module, sizes: list[int]) -> None:
        self.sizes = list(sizes)
        self.linear = linear
        self._input: tuple[torch.Tensor, int] | None = None  # the input the kept outputs are for, and its version
        self._outputs: tuple[torch.Tensor, ...] = ()
        self._waiting: set[int] = set()  # the parts that have not taken theirs yet

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if self._input is None or self._input[0] is not x or self._input[1] != _version(x) or index not in self._waiting:
            self._outputs = self.linear(x).split(self.sizes, dim=-1)
            self._input, self._waiting = (x, _version(x)), set(range(len(self.sizes)))
        out = self._outputs[index]
        self._waiting.discard(index)
        if not self._waiting:  # all taken: hold no tensors between calls
            self._input, self._outputs = None, ()
        return out


def _version(x: torch.Tensor) -> int:
    """How many times `x` was changed in place (inference tensors, which cannot be, count none)."""
    return -1 if x.is_inference() else x._version


class Int8Part(nn.Module):
    """One layer of an `Int8Group`, in the layer's place."""

    def __init__(self, group: Int8Group, index: int) -> None:
        super().__init__()
        self.group, self.index = group, index
        self.in_features, self.out_features = group.linear.in_features, group.sizes[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.group.output(self.index, x)

    def extra_repr(self) -> str:
        return f"part {self.index} of {len(self.group.sizes)}, out_features={self.out_features}"


# Layers that read the same input, by their names in a Qwen VL module (attention; gated MLP).
SHARED_INPUTS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def quantize_linears(module: nn.Module, make: Callable[[nn.Linear], nn.Module] = Int8Linear) -> int:
    """Replace every `nn.Linear` under `module` with an int8 one, or what `make` builds from it (grouped as
    `SHARED_INPUTS`); how many."""
    if isinstance(module, nn.Linear):
        raise ValueError("pass the module that holds the linear layers, not a layer itself")
    count = 0
    for parent in list(module.modules()):
        children = dict(parent.named_children())
        for names in SHARED_INPUTS:
            linears = [children.get(name) for name in names]
            if all(type(linear) is nn.Linear for linear in linears) and len({linear.in_features for linear in linears}) == 1:
                group = Int8Group(linears, make)
                for index, name in enumerate(names):
                    setattr(parent, name, Int8Part(group, index))
                count += len(names)
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, make(child))
                count += 1
    return count


def int8_bytes(module: nn.Module) -> int:
    """Bytes of the int8 weights under `module` (the packed tensors are not parameters)."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, Int8Linear))  # groups counted once
