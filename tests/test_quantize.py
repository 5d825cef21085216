"""`--quantize int8`: int8 linear layers on the CPU, exact KV reuse, and where the flag applies;
and the float16 guard (the vision encoder kept in float32 where float16 is the dtype).

Speed, memory, fidelity and reuse on the 2B shape are figures, not tests: `python -m
bench.quantize --shape 2b` (bench/results/quantize-2b.txt). Here: the arithmetic (close to
float32, and each token's result independent of the tokens beside it), the engine path on the
tiny checkpoint, and KV reuse exact against a re-prefill by the same int8 model.
"""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
from PIL import Image
from torch import nn

from demo.engines.base import GenerationSettings, ModelLoadError
from demo.engines.local.int8 import Int8Linear, Int8Part, int8_available, int8_bytes, quantize_linears
from demo.record.conversation import Conversation, Turn, to_model_messages
from tests.helpers import noise_picture

needs_int8 = pytest.mark.skipif(not int8_available(), reason="this torch build has no int8 kernels")

# Conversations answered twice, reusing a session and from scratch (as tests/test_kv_reuse.py does per family).
GREEDY = GenerationSettings(max_new_tokens=12, min_new_tokens=12)


def answer(engine, conversation, settings=GREEDY, session=None):
    """Greedy answer to the conversation's last turn: (new token ids, first-step logits)."""
    inputs = engine.prepare_inputs(to_model_messages(conversation, ""), settings)
    out = engine.generate(inputs, settings, session, output_logits=True, return_dict_in_generate=True)
    prompt_length = inputs["input_ids"].shape[1]
    return out.sequences[0, prompt_length:].tolist(), out.logits[0][0]


def play(engine, turns, session, check):
    """Answer each turn in order, once reusing `session`'s cache and once from scratch; compare."""
    conversation = Conversation()
    for turn in turns:
        conversation.turns.append(turn)
        reused, reused_logits = answer(engine, conversation, session=session)
        fresh, fresh_logits = answer(engine, conversation)
        check(reused, fresh, reused_logits, fresh_logits)
        turn.answer, turn.status = engine.tokenizer.decode(reused, skip_special_tokens=False), "done"
        turn.answer = engine.clean(turn.answer)
    return conversation


def identical(reused, fresh, reused_logits, fresh_logits):
    assert reused == fresh
    torch.testing.assert_close(reused_logits, fresh_logits, atol=1e-4, rtol=1e-4)


SHAPES = {
    # later turns add images, between text-only follow-ups
    "images in turns 1 and 3": [
        Turn("Compare these.", [noise_picture(1, (120, 80)), noise_picture(2, (64, 96))]),
        Turn("Which is brighter?"),
        Turn("And this one?", [noise_picture(3, (200, 60))]),
        Turn("Summarise all three."),
    ],
    # a text-only start, then an image
    "image only later": [Turn("Hello there."), Turn("Look.", [noise_picture(4, (90, 90))]), Turn("More?")],
    # one image per turn, three turns in a row
    "an image every turn": [Turn(f"Picture {i}?", [noise_picture(10 + i, (56 + 28 * i, 84))]) for i in range(3)],
}




@pytest.fixture(scope="module")
def int8_engine(tiny_checkpoint):
    from demo.engines.local.engine import TransformersEngine

    return TransformersEngine(str(tiny_checkpoint), device="cpu", quantize="int8")


@needs_int8
def test_an_int8_linear_is_close_to_the_float_one_and_each_token_is_independent():
    torch.manual_seed(0)
    linear = nn.Linear(256, 192)
    quantized = Int8Linear(linear)
    x = torch.randn(2, 37, 256)
    with torch.inference_mode():
        reference, out = linear(x), quantized(x)
        assert out.shape == reference.shape and out.dtype == torch.float32
        assert ((out - reference).norm() / reference.norm()).item() < 0.02  # int8 weights and activations
        # A token's output does not depend on the other tokens fed with it (what exact KV reuse needs).
        alone = quantized(x[1, 30:31])
        assert torch.equal(alone, out[1, 30:31])
        assert torch.equal(quantized(x[0, :5]), out[0, :5])
        assert torch.equal(quantized(torch.zeros(3, 256)), linear.bias.expand(3, -1))  # an all-zero token: just the bias


@needs_int8
def test_quantize_linears_replaces_every_linear_under_a_module():
    block = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 4, bias=False)))
    assert quantize_linears(block) == 2
    assert not any(type(m) is nn.Linear for m in block.modules())
    assert block(torch.randn(5, 8)).shape == (5, 4)
    with pytest.raises(ValueError):
        quantize_linears(nn.Linear(2, 2))


class Attention(nn.Module):
    """The projections of a Qwen attention, fed as the models feed them."""

    def __init__(self) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(64, 64), nn.Linear(64, 16), nn.Linear(64, 16)
        self.o_proj = nn.Linear(64, 64, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)


@needs_int8
def test_layers_that_read_one_input_are_computed_together_with_the_same_bits():
    torch.manual_seed(0)
    attention = Attention()
    alone = {name: Int8Linear(getattr(attention, name)) for name in ("q_proj", "k_proj", "v_proj")}
    assert quantize_linears(attention) == 4
    assert all(isinstance(getattr(attention, n), Int8Part) for n in ("q_proj", "k_proj", "v_proj"))
    assert isinstance(attention.o_proj, Int8Linear)
    assert int8_bytes(attention) == 64 * (64 + 16 + 16) + 64 * 64  # the group counted once
    x = torch.randn(2, 5, 64)
    with torch.inference_mode():
        q, k, v = attention(x)
        assert [torch.equal(out, alone[n](x)) for out, n in zip((q, k, v), ("q_proj", "k_proj", "v_proj"), strict=True)] == [True] * 3
        group = attention.q_proj.group
        assert group._input is None and group._outputs == ()  # nothing held once every part took its share
        # Fed otherwise than the model does, a part is still right: another input, or one part twice.
        assert torch.equal(attention.k_proj(x[:, :1]), alone["k_proj"](x[:, :1]))
        assert torch.equal(attention.q_proj(x), alone["q_proj"](x)) and torch.equal(attention.q_proj(x), alone["q_proj"](x))
    y = torch.randn(3, 64)  # a tensor changed in place between two parts is read again
    first = attention.q_proj(y)
    y.mul_(2)
    assert torch.equal(attention.k_proj(y), alone["k_proj"](y)) and torch.equal(first, alone["q_proj"](y / 2))


@needs_int8
@pytest.mark.parametrize("name", ["tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl", "tiny-random-qwen3.5"])
def test_every_generation_answers_the_same_with_its_layers_grouped(tiny_checkpoints, name, monkeypatch):
    """Grouping is by layer names; each generation's modules (Qwen2.5-VL's vision MLP with biases,
    Qwen3-VL's normed q and k, Qwen3.5's linear attention) give the same bits grouped or not."""
    from demo.engines.local import int8
    from demo.engines.local.engine import TransformersEngine

    conversation = Conversation(turns=[Turn("Describe Picture 1.", [noise_picture(5, (112, 84))])])
    grouped = TransformersEngine(str(tiny_checkpoints[name]), device="cpu", quantize="int8")
    assert any(isinstance(m, Int8Part) for m in grouped.model.modules())
    monkeypatch.setattr(int8, "SHARED_INPUTS", ())
    separate = TransformersEngine(str(tiny_checkpoints[name]), device="cpu", quantize="int8")
    assert not any(isinstance(m, Int8Part) for m in separate.model.modules())
    (tokens, logits), (expected_tokens, expected_logits) = answer(grouped, conversation), answer(separate, conversation)
    assert tokens == expected_tokens and torch.equal(logits, expected_logits)


@needs_int8
def test_the_int8_engine_quantizes_the_language_model_output_layer_and_vision(int8_engine):
    model = int8_engine.model
    assert int8_engine.quantize == "int8"
    assert not any(type(m) is nn.Linear for m in model.modules())  # every linear layer, vision included
    assert isinstance(model.lm_head, Int8Linear)
    for layer in model.model.language_model.layers:  # the projections that read one input, computed together
        assert {type(layer.self_attn.q_proj), type(layer.self_attn.k_proj), type(layer.mlp.gate_proj)} == {Int8Part}
    # The token embeddings' table stays bfloat16 (Qwen's checkpoints store it so), looked up as float32; the rest float32.
    embeddings = model.model.language_model.embed_tokens
    assert embeddings.weight.dtype == torch.bfloat16 and embeddings(torch.tensor([[1, 2]])).dtype == torch.float32
    assert model.model.language_model.norm.weight.dtype == torch.float32
    messages = [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
    answer = "".join(int8_engine.stream(messages, GenerationSettings(max_new_tokens=8, min_new_tokens=8), threading.Event()))
    assert answer


@needs_int8
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_kv_reuse_is_exact_with_int8(int8_engine, shape):
    """The same checks as tests/test_kv_reuse.py, on the int8 model: token-identical, logits equal.

    (Bitwise here. On the 2B shape float32 attention's last bits, which differ between a prefill
    and a decode step, can cross an int8 rounding step: bench/results/quantize-2b.txt measures it.)
    """
    int8_engine.forget(shape)
    play(int8_engine, [Turn(t.text, list(t.attachments)) for t in SHAPES[shape]], shape, identical)
    int8_engine.forget(shape)


@needs_int8
def test_torch_quantize_dynamic_would_not_keep_reuse_exact(tiny_checkpoint):
    """Why the project has its own int8 layer: `quantize_dynamic` scales a call's activations
    together, so a cached prefix and a re-prefill of the same prompt differ."""
    from demo.engines.local.engine import TransformersEngine

    engine = TransformersEngine(str(tiny_checkpoint), device="cpu", dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic = pytest.importorskip("torch.ao.quantization").quantize_dynamic
        quantize_dynamic(engine.model.model.language_model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    differences = []
    turns = [Turn(t.text, list(t.attachments)) for t in SHAPES["images in turns 1 and 3"]]
    play(engine, turns, "dynamic", lambda r, f, rl, fl: differences.append((rl - fl).abs().max().item()))
    assert max(differences) > 1e-3  # the int8 layer above gives exactly 0


def test_resolve_quantize():
    from demo.engines.local.precision import resolve_quantize

    assert resolve_quantize("auto", "cpu") == "int8"
    assert resolve_quantize("auto", "cuda") == "none"
    assert resolve_quantize("none", "cuda") == "none"
    with pytest.raises(ModelLoadError, match="CPU only"):
        resolve_quantize("int8", "cuda")
    with pytest.raises(ValueError):
        resolve_quantize("int2", "cpu")


@needs_int8
def test_the_flag_reaches_the_engine(tmp_path, monkeypatch):
    import app

    monkeypatch.setenv("QWEN_CHAT_CACHE", str(tmp_path))
    engine = app.load_engine(app.parse_args(["--model", "tiny-random", "--device", "cpu", "--quantize", "int8"]))
    assert engine.quantize == "int8" and isinstance(engine.model.lm_head, Int8Linear)


def test_under_float16_the_vision_encoder_runs_in_float32(tiny_checkpoint, photos):
    """Qwen VL vision towers overflow float16 (reported for Qwen2.5-VL and Qwen3-VL: intermediates
    above 65504). Here an intermediate is pushed there on purpose (random weights never get
    there): the guarded encoder stays finite, the same encoder in float16 does not."""

    from demo.engines.local.engine import TransformersEngine

    engine = TransformersEngine(str(tiny_checkpoint), device="cpu", dtype="float16")
    visual = engine.model.model.visual
    assert visual.dtype == torch.float32 and engine.model.model.language_model.embed_tokens.weight.dtype == torch.float16
    messages = [{"role": "user", "content": [{"type": "image", "image": Image.open(photos["chelsea"]).convert("RGB")},
                                             {"type": "text", "text": "What is it?"}]}]
    inputs = engine.prepare_inputs(messages, GenerationSettings())

    def features() -> torch.Tensor:
        with torch.inference_mode():
            out = engine.model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True)
        return torch.cat(out.pooler_output)

    mlp = visual.blocks[0].mlp
    peak = []
    hook = mlp.fc1.register_forward_hook(lambda module, args, out: peak.append(out.abs().max().item()))
    features()
    hook.remove()
    scale = 2e5 / peak[0]  # fc1's largest output becomes 200,000, beyond float16's 65,504; fc2 scaled back
    with torch.no_grad():
        mlp.fc1.weight.mul_(scale)
        mlp.fc1.bias.mul_(scale)
        mlp.fc2.weight.div_(scale)
    assert torch.isfinite(features()).all()
    assert "".join(engine.stream(messages, GenerationSettings(max_new_tokens=4, min_new_tokens=4), threading.Event()))
    visual.half()  # what float16 everywhere would do
    assert not torch.isfinite(features()).all()


@pytest.mark.slow
@needs_int8
def test_the_benchmark_runs_on_the_tiny_checkpoint(tmp_path):
    """`python -m bench.quantize --shape tiny`: every figure is computed (tiny's values mean nothing)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "q.json"
    subprocess.run(
        [sys.executable, "-m", "bench.quantize", "--shape", "tiny", "--repeats", "1", "--variants", "float32", "int8", "--json", str(out)],
        cwd=Path(__file__).resolve().parent.parent, check=True, capture_output=True, timeout=600,
    )
    results = json.loads(out.read_text())
    assert set(results["variants"]) == {"float32", "int8"}
    int8 = results["variants"]["int8"]
    assert int8["fidelity"]["top1_agreement"] > 0.5 and int8["reuse"]["same_tokens"]
    assert {t["figure"] for t in results["targets"]} == {"decode_tok_s", "first_token_s", "peak_rss_bytes"}


def test_the_bfloat16_embedding_table_is_its_own_copy():
    """A checkpoint read in its own dtype can hand out views of the file's memory map: a table that kept one
    kept the whole map resident (the 2B model held 3.2 GiB more after loading, bench/results/cpu-2b.txt)."""
    from demo.engines.local.precision import Bfloat16Embedding

    original = nn.Embedding(10, 4, dtype=torch.bfloat16)
    embedding = Bfloat16Embedding(original)
    assert embedding.weight.untyped_storage().data_ptr() != original.weight.untyped_storage().data_ptr()
    ids = torch.tensor([[3, 7]])
    assert embedding(ids).dtype == torch.float32 and torch.equal(embedding(ids), original(ids).float())
