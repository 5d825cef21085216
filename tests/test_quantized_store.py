"""The quantized weights kept on disk (`demo/engines/local/quantized_store.py`): a later start reads them.

A model read from the store must be the model quantized from the checkpoint, bit for bit (logits,
greedy answers, the non-persistent buffers a meta skeleton lacks), without reading the checkpoint's
weights; the key must change with what changes the bytes; a damaged entry is rebuilt and an
unwritable cache costs a warning, never the start. Memory and time on the 2B shape are figures:
`python -m bench.quantize --shape 2b --variants int8 int4` (first start against a later one).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from demo.engines.base import GenerationSettings
from demo.engines.local import quantized_store
from demo.engines.local.int4 import Int4Linear, int4_available
from demo.engines.local.int8 import Int8Linear, int8_available
from demo.record.conversation import Conversation, Turn, to_model_messages
from tests.helpers import noise_picture

pytestmark = pytest.mark.skipif(not (int8_available() and int4_available()), reason="this torch build has no int8 or int4 CPU kernels")

CONVERSATION = Conversation(turns=[Turn("Describe Picture 1.", [noise_picture(7, (112, 84))])])
GREEDY = GenerationSettings(max_new_tokens=8, min_new_tokens=8)


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """This test's own cache root: the store starts empty."""
    monkeypatch.setenv("QWEN_CHAT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def engine(checkpoint: Path, mode: str, **kwargs):
    from demo.engines.local.engine import TransformersEngine

    return TransformersEngine(str(checkpoint), device="cpu", quantize=mode, **kwargs)


def answer(engine) -> tuple[list[int], torch.Tensor]:
    """Greedy tokens for a question about a picture (vision in int8 too), and the logits of every prompt position."""
    inputs = engine.prepare_inputs(to_model_messages(CONVERSATION, ""), GREEDY)
    with torch.inference_mode():
        logits = engine.model(**inputs).logits
    out = engine.generate(inputs, GREEDY, return_dict_in_generate=True)
    return out.sequences[0, inputs["input_ids"].shape[1] :].tolist(), logits


def entries(root: Path) -> list[Path]:
    return sorted(p for p in (root / "quantized").glob("*") if p.is_dir()) if (root / "quantized").is_dir() else []


def copy_checkpoint(checkpoint: Path, into: Path) -> Path:
    """A copy in `into` with the same names, sizes and times (a local directory's name and key): the same entry."""
    shutil.copytree(checkpoint, into / checkpoint.name)
    return into / checkpoint.name


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-qwen3-vl"])
def test_a_later_start_reads_the_same_model_without_the_checkpoints_weights(tiny_checkpoints, root, tmp_path, name, mode):
    quantized_fresh = engine(tiny_checkpoints[name], mode, keep_quantized=False)
    assert entries(root) == []  # turned off: nothing written
    first = engine(tiny_checkpoints[name], mode)
    [entry] = entries(root)
    assert entry == quantized_store.entry_dir(tiny_checkpoints[name], mode, torch.float32)
    assert entry.name.startswith(f"{tiny_checkpoints[name].name}-{mode}-")
    # The weight files zeroed, their sizes and times kept (the key): read, they would fail to parse.
    checkpoint = copy_checkpoint(tiny_checkpoints[name], tmp_path / "zeroed")
    for weights in checkpoint.glob("*.safetensors"):
        stat = weights.stat()
        weights.write_bytes(bytes(stat.st_size))
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    later = engine(checkpoint, mode)
    assert entries(root) == [entry]
    expected_tokens, expected_logits = answer(quantized_fresh)
    for loaded in (first, later):
        tokens, logits = answer(loaded)
        assert tokens == expected_tokens and torch.equal(logits, expected_logits)
    # Transformers' state beyond the weights: non-persistent buffers (rotary inv_freq), configs, structure.
    fresh, model = quantized_fresh.model, later.model
    assert [(n, b.dtype) for n, b in fresh.named_buffers()] == [(n, b.dtype) for n, b in model.named_buffers()]
    assert all(torch.equal(a, b) for a, b in zip(fresh.buffers(), model.buffers(), strict=True))
    assert "model.language_model.rotary_emb.inv_freq" in dict(fresh.named_buffers())
    assert not any(b.is_meta for b in model.buffers()) and not model.training
    assert fresh.config.to_diff_dict() == model.config.to_diff_dict()
    assert fresh.generation_config.to_dict() == model.generation_config.to_dict()
    assert str(fresh) == str(model)


def test_a_cached_load_reads_none_of_the_checkpoints_weight_files(tiny_checkpoint, root, tmp_path):
    """With the *.safetensors removed (which changes a local directory's key: the entry is named by hand)."""
    first = engine(tiny_checkpoint, "int4")
    [entry] = entries(root)
    checkpoint = copy_checkpoint(tiny_checkpoint, tmp_path / "no-weights")
    for weights in checkpoint.glob("*.safetensors"):
        weights.unlink()
    model = quantized_store.load(entry, checkpoint)
    assert model is not None
    ids = torch.tensor([[5, 9, 200, 31, 7]])
    with torch.inference_mode():
        assert torch.equal(model.eval()(input_ids=ids).logits, first.model(input_ids=ids).logits)


def test_a_tensor_under_two_names_stays_one(tiny_checkpoint, root):
    """Tied parameters (none are left once quantized, but a model may have them) are stored once and tied again."""
    model = engine(tiny_checkpoint, "int8", keep_quantized=False).model
    block = model.model.visual.blocks[0]
    block.norm2.weight = block.norm1.weight
    entry = root / "tied"
    assert quantized_store.save(model, entry)
    loaded = quantized_store.load(entry, tiny_checkpoint)
    assert loaded.model.visual.blocks[0].norm2.weight is loaded.model.visual.blocks[0].norm1.weight
    assert torch.equal(loaded.model.visual.blocks[0].norm1.weight, block.norm1.weight)


@pytest.mark.parametrize(
    "shape, bias",
    [((192, 256), True), ((64, 64), False), ((17, 33), True)],  # odd sizes: oneDNN pads its packing
)
def test_an_int8_layer_hands_out_its_exact_int8_weights_and_is_rebuilt_from_them(shape, bias):
    torch.manual_seed(0)
    linear = nn.Linear(shape[1], shape[0], bias=bias)
    layer = Int8Linear(linear)
    stored = layer.stored()
    weight = linear.weight.detach()
    scale = weight.abs().amax(dim=1) / 127
    assert torch.equal(stored["weight"], torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
    rebuilt = Int8Linear.from_stored(stored)
    x = torch.randn(5, shape[1])
    with torch.inference_mode():
        assert torch.equal(rebuilt(x), layer(x))
    assert stored["weight"].data_ptr() != layer.stored()["weight"].data_ptr()  # unpacked anew each time: not kept


def test_an_int4_layer_is_rebuilt_from_its_packed_weights():
    torch.manual_seed(0)
    layer = Int4Linear(nn.Linear(256, 192))
    rebuilt = Int4Linear.from_stored({k: v.clone() for k, v in layer.stored().items()}, 256)
    assert (rebuilt.in_features, rebuilt.out_features, rebuilt.group_size) == (256, 192, 128)
    x = torch.randn(3, 256)
    with torch.inference_mode():
        assert torch.equal(rebuilt(x), layer(x))


def _touch_weights(checkpoint: Path) -> None:
    weights = next(checkpoint.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())  # the same bytes, written again: another time


def _edit_config(checkpoint: Path) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "note": "edited"}))


KEY_CHANGES = {
    "a weight file written again": lambda p, patch: _touch_weights(p),
    "config.json edited": lambda p, patch: _edit_config(p),
    "vision not quantized": lambda p, patch: patch.setattr("demo.engines.local.precision.INT8_VISION", False),
    "other layer groups": lambda p, patch: patch.setattr("demo.engines.local.int8.SHARED_INPUTS", ()),
    "another torch": lambda p, patch: patch.setattr(torch, "__version__", "9.9.9"),
    "another CPU capability": lambda p, patch: patch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2"),
    "another transformers": lambda p, patch: patch.setattr("transformers.__version__", "9.9.9"),
    "quantization code edited": lambda p, patch: patch.setattr(quantized_store, "CODE", (*quantized_store.CODE[:-1], p / "config.json")),
}


@pytest.mark.parametrize("change", KEY_CHANGES, ids=list(KEY_CHANGES))
def test_the_key_changes_with_what_changes_the_stored_bytes(tiny_checkpoint, tmp_path, monkeypatch, change):
    checkpoint = copy_checkpoint(tiny_checkpoint, tmp_path / "checkpoint")
    before = quantized_store.entry_dir(checkpoint, "int8", torch.float32, tmp_path)
    assert before == quantized_store.entry_dir(tiny_checkpoint, "int8", torch.float32, tmp_path)  # same files, same key
    assert before != quantized_store.entry_dir(checkpoint, "int4", torch.float32, tmp_path)
    assert before != quantized_store.entry_dir(checkpoint, "int8", torch.bfloat16, tmp_path)
    KEY_CHANGES[change](checkpoint, monkeypatch)
    assert quantized_store.entry_dir(checkpoint, "int8", torch.float32, tmp_path) != before


def test_a_hub_snapshot_is_keyed_by_its_commit(tiny_checkpoint, tmp_path):
    def snapshot(commit: str) -> Path:
        shutil.copytree(tiny_checkpoint, tmp_path / "hub" / "models--Qwen--Tiny-VL" / "snapshots" / commit)
        return tmp_path / "hub" / "models--Qwen--Tiny-VL" / "snapshots" / commit

    first, other = snapshot("a" * 40), snapshot("b" * 40)
    entry = quantized_store.entry_dir(first, "int4", torch.float32, tmp_path)
    assert entry.name.startswith("Tiny-VL-int4-")
    _touch_weights(first)  # a blob downloaded again: the same commit, the same bytes
    assert quantized_store.entry_dir(first, "int4", torch.float32, tmp_path) == entry
    assert quantized_store.entry_dir(other, "int4", torch.float32, tmp_path) != entry


def _truncate(entry: Path) -> None:
    shard = entry / "00000.safetensors"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])


def _garble_header(entry: Path) -> None:
    shard = entry / "00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[8:40] = b"\xff" * 32  # inside the JSON header
    shard.write_bytes(bytes(data))


def _drop_first_record(entry: Path) -> None:
    manifest = json.loads((entry / quantized_store.MANIFEST).read_text())
    (entry / quantized_store.MANIFEST).write_text(json.dumps({**manifest, "records": manifest["records"][1:]}))


DAMAGE = {
    "a file cut short": _truncate,
    "a file's header garbled": _garble_header,
    "a file missing": lambda entry: (entry / "00000.safetensors").unlink(),
    "the manifest not JSON": lambda entry: (entry / quantized_store.MANIFEST).write_text("{"),
    "a tensor missing from the manifest": lambda entry: _drop_first_record(entry),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_entry_is_ignored_and_rebuilt(tiny_checkpoint, root, damage, caplog):
    reference = engine(tiny_checkpoint, "int8")
    [entry] = entries(root)
    DAMAGE[damage](entry)
    with caplog.at_level(logging.WARNING):
        rebuilt = engine(tiny_checkpoint, "int8")
    assert ["cannot be read" in r.message for r in caplog.records if r.name == quantized_store.log.name] == [True]
    assert answer(rebuilt)[0] == answer(reference)[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = quantized_store.load(entry, tiny_checkpoint)  # written anew, whole
    assert again is not None and not [r for r in caplog.records if r.name == quantized_store.log.name]


def _fail_the_second_file(monkeypatch) -> None:
    import safetensors.torch

    real, calls = safetensors.torch.save_file, []

    def save_file(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # what safetensors 0.8 raises on a full disk (seen on a 1 MiB tmpfs)
            raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        real(tensors, path, metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    monkeypatch.setattr(quantized_store, "SHARD_BYTES", 64 * 1024)  # several files for the tiny model


UNWRITABLE = {
    "the cache root is a file": lambda root, patch: (root.parent.mkdir(parents=True, exist_ok=True), root.write_text("")),
    "too little free space": lambda root, patch: patch.setattr(
        quantized_store.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**12, used=10**12 - 2**20, free=2**20)
    ),
    "the disk fills up while writing": lambda root, patch: _fail_the_second_file(patch),
}


@pytest.mark.parametrize("cause", UNWRITABLE, ids=list(UNWRITABLE))
def test_an_unwritable_cache_costs_one_warning_not_the_start(tiny_checkpoint, root, monkeypatch, cause, caplog):
    UNWRITABLE[cause](root, monkeypatch)
    with caplog.at_level(logging.WARNING):
        loaded = engine(tiny_checkpoint, "int4")
    warnings = [r.message for r in caplog.records if r.name == quantized_store.log.name]
    assert len(warnings) == 1 and "could not be kept" in warnings[0]
    assert answer(loaded)[0]
    left = list((root / "quantized").iterdir()) if (root / "quantized").is_dir() else []
    assert left == []  # nothing half-written left behind: no entry, no staging directory


def test_the_flag_turns_it_off(tiny_checkpoint, root):
    import app

    args = app.parse_args(["--model", str(tiny_checkpoint), "--device", "cpu", "--quantize", "int8", "--no-quantized-cache"])
    assert app.load_engine(args).keep_quantized is False
    assert entries(root) == []
    assert app.load_engine(app.parse_args(["--model", str(tiny_checkpoint), "--device", "cpu", "--quantize", "int8"])).keep_quantized
    assert len(entries(root)) == 1


def test_the_bench_measures_a_later_start_from_the_store(tiny_checkpoint, tmp_path, monkeypatch):
    """`bench.quantize` starts a quantized variant twice; the second reads what the first kept."""
    from bench import quantize as bench

    monkeypatch.setenv("QWEN_CHAT_CACHE", str(tiny_checkpoint.parent))  # the session's tiny checkpoint, not ~/.cache
    kept_before = list(tiny_checkpoint.parent.glob("quantized/*"))
    results = bench.main(["--shape", "tiny", "--variants", "int4", "--repeats", "1", "--max-new-tokens", "2", "--json", str(tmp_path / "out.json")])
    later = results["variants"]["int4"]["later_start"]
    assert later["read_from_store"] and later["same_logits"]
    assert results["variants"]["int4"]["stored_bytes"] > 0 and later["load_peak_bytes"] >= later["rss_after_load_bytes"] > 0
    assert list(tiny_checkpoint.parent.glob("quantized/*")) == kept_before  # the bench's store was its own, and is gone
    assert "later start: same logits" in bench.report(results)
