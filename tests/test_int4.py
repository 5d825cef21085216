"""`--quantize int4`: 4-bit weights in the language model (`demo/engines/local/int4.py`), vision in int8.

Speed, memory and fidelity on the 2B shape are figures: `python -m bench.quantize --shape 2b
--variants float32 int8 int4`. Here: the arithmetic (what the kernel computes is the 4-bit weights
the layer was built with; each token's row on its own), the engine path on the tiny checkpoint
through the real decoding, and KV reuse exact against a re-prefill by the same int4 model.
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from demo.engines.base import GenerationSettings, ModelLoadError
from demo.engines.local.int4 import GROUP_SIZE, Int4Linear, group_size, int4_available, int4_bytes
from demo.engines.local.int8 import Int8Linear, Int8Part, int8_available
from demo.record.conversation import Turn
from tests.test_quantize import SHAPES, identical, play

pytestmark = pytest.mark.skipif(not (int4_available() and int8_available()), reason="this torch build has no int4 or int8 CPU kernels")


def reference_int4(weight: torch.Tensor, size: int) -> torch.Tensor:
    """The float weights each 4-bit level stands for: per group of `size` inputs, 16 levels from the
    group's minimum to its maximum (scales in bfloat16, as the kernel reads them)."""
    out_features = weight.shape[0]
    groups = weight.reshape(out_features, -1, size)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = (high - low) / 15
    levels = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15)
    scale16, offset16 = scale.bfloat16().float(), (low + 8 * scale).bfloat16().float()
    return ((levels - 8) * scale16[..., None] + offset16[..., None]).reshape(weight.shape)


@pytest.mark.parametrize(
    "in_features, out_features, size",
    [
        (256, 192, 128),  # two groups of 128 per output (the 2B model's layers: 1536 and 8960 inputs)
        (64, 128, 64),  # the tiny checkpoint's width: groups of 64
        (96, 64, 32),  # 96 inputs: groups of 32
    ],
)
def test_an_int4_linear_computes_its_4_bit_weights_and_each_token_alone(in_features, out_features, size):
    torch.manual_seed(0)
    linear = nn.Linear(in_features, out_features)
    layer = Int4Linear(linear)
    assert layer.group_size == group_size(in_features) == size
    x = torch.randn(7, in_features)
    with torch.inference_mode():
        expected = x.bfloat16().float() @ reference_int4(linear.weight.detach(), size).T + linear.bias
        got = layer(x)
        # The kernel sums in float32 from bfloat16 products: within a few bfloat16 steps of the exact sum.
        torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-2)
        # Close to the float layer too: 4 bits cost about a fifteenth of a group's range per weight.
        assert (got - linear(x)).abs().max() < 0.25 * linear(x).abs().max()
        # Each row on its own: the same bits alone as beside others (a cached prefix equals a re-prefill).
        assert torch.equal(torch.cat([layer(x[i : i + 1]) for i in range(7)]), got)
    assert int4_bytes(layer) == out_features * in_features // 2 + 2 * 2 * out_features * (in_features // size)


def test_layers_that_cannot_be_grouped_are_refused():
    assert group_size(48) is None
    with pytest.raises(ValueError, match="do not both fit"):
        Int4Linear(nn.Linear(48, 64))  # inputs not in groups of 32
    with pytest.raises(ValueError, match="do not both fit"):
        Int4Linear(nn.Linear(64, 40))  # outputs not by 16 (the packing's): such a layer stays int8 in the engine
    assert GROUP_SIZE == 128


@pytest.fixture(scope="module")
def int4_engine(tiny_checkpoint):
    from demo.engines.local.engine import TransformersEngine

    return TransformersEngine(str(tiny_checkpoint), device="cpu", quantize="int4")


def test_the_int4_engine_has_4_bit_language_layers_and_int8_vision(int4_engine):
    model = int4_engine.model
    assert int4_engine.quantize == "int4"
    assert not any(type(m) is nn.Linear for m in model.modules())
    # The tiny vocabulary is not a multiple of 16 outputs: its output layer stays int8 (the 2B's 151,936 is).
    assert isinstance(model.lm_head, Int4Linear if model.lm_head.out_features % 16 == 0 else Int8Linear)
    for layer in model.model.language_model.layers:  # grouped as in int8, each group one 4-bit layer
        assert type(layer.self_attn.q_proj) is Int8Part and isinstance(layer.self_attn.q_proj.group.linear, Int4Linear)
        assert type(layer.mlp.down_proj) is Int4Linear
    vision = [m for m in model.model.visual.modules() if isinstance(m, (Int8Linear, Int4Linear))]
    assert vision and all(isinstance(m, Int8Linear) for m in vision)  # pictures are read in int8
    messages = [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
    answer = "".join(int4_engine.stream(messages, GenerationSettings(max_new_tokens=8, min_new_tokens=8), threading.Event()))
    assert answer


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_kv_reuse_is_exact_with_int4(int4_engine, shape):
    int4_engine.forget(shape)
    play(int4_engine, [Turn(t.text, list(t.attachments)) for t in SHAPES[shape]], shape, identical)
    int4_engine.forget(shape)


def test_int4_is_for_the_cpu():
    from demo.engines.local.precision import resolve_quantize

    assert resolve_quantize("int4", "cpu") == "int4"
    with pytest.raises(ModelLoadError, match="CPU only"):
        resolve_quantize("int4", "cuda")


def test_the_flag_reaches_the_engine(tmp_path, monkeypatch):
    import app

    monkeypatch.setenv("QWEN_CHAT_CACHE", str(tmp_path))
    engine = app.load_engine(app.parse_args(["--model", "tiny-random", "--device", "cpu", "--quantize", "int4"]))
    assert engine.quantize == "int4" and isinstance(engine.model.model.language_model.layers[0].mlp.down_proj, Int4Linear)
