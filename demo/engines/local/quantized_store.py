"""A quantized model kept on disk, so that a later start reads it instead of quantizing the checkpoint again.

`entry_dir` names a model's entry: `<cache root>/quantized/<name>-<mode>-<key>/`, the root being
`$QWEN_CHAT_CACHE` or ~/.cache/qwen-vl-chat. The key changes with anything that could change the
stored bytes: the checkpoint's revision (a Hub snapshot's commit; for another directory, its weight
files' names, sizes and times and its config.json), the mode and settings (`INT8_VISION`...), the dtype, the
torch version and CPU capability (the int4 packing's layout is theirs), the transformers version and
the source of the quantization code. `save` writes a model quantized by `quantize_model` there,
in files of about `SHARD_BYTES` in the model's order, into a staging directory renamed into place
at the end, so a half-written entry is never read; `load` builds the model from an entry without
reading the checkpoint's weights: a skeleton on the meta device (transformers' own classes, no
memory), each stored tensor assigned in place, the quantized layers rebuilt from theirs
(`from_stored`). Loading peaks at about the final size plus one file; int8 layers are packed again
for this CPU's oneDNN (its packing is opaque), int4 ones are used as stored.

What an entry holds: each `Int8Linear`'s int8 weights and scales, each `Int4Linear`'s packed weights
and scales as torch packed them, groups (`Int8Group`) as their stacked layer, the bfloat16 token
embeddings, and every other parameter and buffer in the dtype the quantized model holds it,
non-persistent ones too (rotary `inv_freq`: a meta skeleton has none, and transformers recomputes
them only inside `from_pretrained`).

What it does not know: whether a file's bytes changed after they were written (its size is checked,
not a checksum); when an entry is no longer wanted (entries of older keys stay until deleted); tensors
a module holds outside its parameters and buffers, other than the quantized layers' own (runtime
state such as Qwen2-VL's `rope_deltas` is not stored; one made at construction would be left on the
meta device, and `load` refuses such a model). A write that fails logs one warning; an entry that
cannot be read is deleted, and rebuilt.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from demo.engines.local import int4, int8, precision
from demo.engines.local.int4 import Int4Linear
from demo.engines.local.int8 import Int8Group, Int8Linear, Int8Part
from demo.engines.local.precision import Bfloat16Embedding

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
SHARD_BYTES = 256 * 2**20  # a file is written (and read) whole: the memory both need beyond the model's
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.index.json")
# The code that decides the stored bytes: a change to it changes every key.
CODE = (*(Path(module.__file__) for module in (int8, int4, precision)), Path(__file__))


def checkpoint_revision(checkpoint: Path) -> str:
    """A Hub snapshot directory's commit (its name); for another directory, a digest of its weight
    files' names, sizes and modification times and of its config.json (reading the weights would take long)."""
    if checkpoint.parent.name == "snapshots" and checkpoint.parent.parent.name.startswith("models--"):
        return checkpoint.name
    stats = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for pattern in WEIGHT_FILES for p in sorted(checkpoint.glob(pattern))]
    digest = hashlib.sha256((checkpoint / "config.json").read_bytes())
    digest.update("\0".join(stats).encode())
    return digest.hexdigest()


def entry_dir(checkpoint: str | Path, mode: str, dtype: torch.dtype, root: Path | None = None) -> Path:
    """Where the `mode` ("int8", "int4") quantization of `checkpoint` in `dtype` is (or will be) kept."""
    import transformers

    from demo.engines.tiny import default_cache_dir

    checkpoint = Path(checkpoint).resolve()
    hub = checkpoint.parent.parent.name
    name = hub.split("--")[-1] if checkpoint.parent.name == "snapshots" and hub.startswith("models--") else checkpoint.name
    # The settings as they are now (a bench or a test may change them), and the code that applies them.
    settings = f"vision {precision.INT8_VISION}, groups {int8.SHARED_INPUTS}, int4 groups of {int4.GROUP_SIZE}"
    parts = [
        str(FORMAT), checkpoint_revision(checkpoint), mode, settings, str(dtype), torch.__version__,
        torch.backends.cpu.get_cpu_capability(), transformers.__version__, *(path.read_text("utf-8") for path in CODE),
    ]  # fmt: skip
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    return (root or default_cache_dir()) / "quantized" / f"{name}-{mode}-{digest}"


def _records(module: nn.Module, prefix: str = "", seen: dict | None = None) -> Iterator[tuple[dict, dict]]:
    """(what to rebuild, its tensors) for every quantized layer, embedding, parameter and buffer under `module`, in order."""
    seen = {} if seen is None else seen  # id of a tensor -> the name it was stored under
    for name, tensor in [*module._parameters.items(), *module._buffers.items()]:
        if tensor is None:
            continue
        if id(tensor) in seen:  # tied: one tensor under two names
            yield {"kind": "same", "name": prefix + name, "as": seen[id(tensor)]}, {}
            continue
        seen[id(tensor)] = prefix + name
        kind = "parameter" if name in module._parameters else "buffer"
        yield {"kind": kind, "name": prefix + name, "requires_grad": tensor.requires_grad}, {"value": tensor.detach()}
    groups: dict[int, dict] = {}
    for name, child in module.named_children():
        path = prefix + name
        if isinstance(child, Int8Part):  # its group is stored once, with the names of its parts
            group = groups.setdefault(id(child.group), {"kind": "group", "name": path, "parts": {}, "group": child.group})
            group["parts"][child.index] = path
        elif isinstance(child, (Int8Linear, Int4Linear)):
            yield {"kind": "int8" if isinstance(child, Int8Linear) else "int4", "name": path, "in_features": child.in_features}, child.stored()
        elif isinstance(child, Bfloat16Embedding):
            yield {"kind": "embedding", "name": path, "padding_idx": child.padding_idx}, child.stored()
        else:
            yield from _records(child, path + ".", seen)
    for group in groups.values():
        layer, parts = group.pop("group"), group.pop("parts")
        if sorted(parts) != list(range(len(layer.sizes))):  # rebuilt from these names alone
            raise ValueError(f"the group of {group['name']} has parts outside {prefix or 'the model'}")
        kind = "int8" if isinstance(layer.linear, Int8Linear) else "int4"
        record = {**group, "parts": [parts[i] for i in sorted(parts)], "sizes": layer.sizes, "layer": kind, "in_features": layer.linear.in_features}
        yield record, layer.linear.stored()


def stored_bytes(model: nn.Module) -> int:
    """About the bytes an entry of `model` takes (int8 weights counted from their shapes, not unpacked)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(b.numel() * b.element_size() for b in model.buffers())
    for m in model.modules():
        if isinstance(m, Int8Linear):
            total += m.in_features * m.out_features
        elif isinstance(m, (Int4Linear, Bfloat16Embedding)):
            extra = m.scales_and_offsets if isinstance(m, Int4Linear) else m.table
            total += extra.numel() * extra.element_size()
    return total


def save(model: nn.Module, entry: Path) -> bool:
    """Write the quantized `model` as `entry`; False, after one warning, when it cannot be written."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    staging = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        free, needed = shutil.disk_usage(entry.parent).free, stored_bytes(model)
        if free < needed + 2**30:  # leave a GiB: filling the disk would hurt more than quantizing again
            raise OSError(errno.ENOSPC, f"{needed / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free")
        staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=entry.parent))
        shards: list[dict] = []
        records: list[dict] = []
        pending: dict[str, torch.Tensor] = {}

        def flush() -> None:
            path = staging / f"{len(shards):05d}.safetensors"
            save_file(pending, path)  # writes from the tensors' memory, no copy (safetensors 0.6+)
            shards.append({"file": path.name, "bytes": path.stat().st_size})
            pending.clear()

        for record, tensors in _records(model):
            size = sum(t.numel() * t.element_size() for t in tensors.values())
            if pending and sum(t.numel() * t.element_size() for t in pending.values()) + size > SHARD_BYTES:
                flush()
            record["shard"] = len(shards)
            records.append(record)
            pending.update({f"{record['name']}/{field}": t.contiguous() for field, t in tensors.items()})
        if pending:
            flush()
        (staging / MANIFEST).write_text(json.dumps({"format": FORMAT, "shards": shards, "records": records}))
        try:
            staging.rename(entry)  # atomic: a half-written entry is never seen
        except OSError:
            if not (entry / MANIFEST).is_file():  # not another process that wrote it first
                raise
        return True
    except (OSError, ValueError, SafetensorError) as e:  # safetensors reports a full disk as its own error
        log.warning("the quantized weights could not be kept in %s (%s): the next start quantizes again", entry, e)
        return False
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def load(entry: Path, checkpoint: str | Path, attn_implementation: str = "sdpa") -> nn.Module | None:
    """The model kept as `entry` (config and generation config from `checkpoint`, its weights untouched),
    in training mode as transformers builds it; None without an entry, or when it cannot be read (then deleted)."""
    if not (entry / MANIFEST).is_file():
        return None
    try:
        return _assemble(entry, Path(checkpoint), attn_implementation)
    except (MemoryError, torch.OutOfMemoryError):
        raise  # the entry is fine; the machine is short
    except Exception as e:  # noqa: BLE001 - what a damaged entry raises is open-ended (json, safetensors, torch, a missing key)
        log.warning("the quantized weights in %s cannot be read (%s): quantizing the checkpoint again", entry, e)
        shutil.rmtree(entry, ignore_errors=True)
        return None


def _assemble(entry: Path, checkpoint: Path, attn_implementation: str) -> nn.Module:
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForImageTextToText, GenerationConfig

    manifest = json.loads((entry / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"format {manifest.get('format')}, expected {FORMAT}")
    config = AutoConfig.from_pretrained(checkpoint)
    with torch.device("meta"):  # the skeleton: every tensor on the meta device, no memory
        model = AutoModelForImageTextToText.from_config(config, dtype=config.dtype, attn_implementation=attn_implementation)
    by_shard: dict[int, list[dict]] = {}
    for record in manifest["records"]:
        if record["kind"] != "same":  # tied again once every tensor is in place
            by_shard.setdefault(record["shard"], []).append(record)
    for index, shard in enumerate(manifest["shards"]):
        path = entry / shard["file"]
        if path.stat().st_size != shard["bytes"]:
            raise ValueError(f"{shard['file']} has {path.stat().st_size} bytes, {shard['bytes']} were written")
        # pread: each tensor gets memory of its own; a memory map would keep the file's pages resident
        with safe_open(path, framework="pt", backend="pread") as f:
            fields: dict[str, list[str]] = {}
            for key in f.keys():
                fields.setdefault(key.rsplit("/", 1)[0], []).append(key)
            for record in by_shard.get(index, []):
                _install(model, record, {key.rsplit("/", 1)[1]: f.get_tensor(key) for key in fields.get(record["name"], [])})
    for record in manifest["records"]:
        if record["kind"] == "same":
            parent_name, _, leaf = record["as"].rpartition(".")
            parent = model.get_submodule(parent_name)
            _assign(model, record["name"], parent._parameters[leaf] if leaf in parent._parameters else parent._buffers[leaf])
    left = [f"{name}.{key}" for name, m in model.named_modules() for key, value in [*m._parameters.items(), *m._buffers.items(), *vars(m).items()]
            if isinstance(value, torch.Tensor) and value.is_meta]  # fmt: skip
    if left:
        raise ValueError(f"{len(left)} tensors are not in the entry ({', '.join(left[:3])}...)")
    try:  # as from_pretrained does (`GenerationMixin.adjust_generation_fn`): the file, else the model's config
        model.generation_config = GenerationConfig.from_pretrained(checkpoint)
    except OSError:
        model.generation_config = GenerationConfig.from_pretrained(checkpoint, config_file_name="config.json", _from_model_config=True)
    return model


def _install(model: nn.Module, record: dict, tensors: dict[str, torch.Tensor]) -> None:
    kind, name = record["kind"], record["name"]
    if kind in ("parameter", "buffer"):
        value = tensors["value"]
        _assign(model, name, nn.Parameter(value, requires_grad=record["requires_grad"]) if kind == "parameter" else value)
    elif kind == "int8":
        _assign(model, name, Int8Linear.from_stored(tensors))
    elif kind == "int4":
        _assign(model, name, Int4Linear.from_stored(tensors, record["in_features"]))
    elif kind == "embedding":
        _assign(model, name, Bfloat16Embedding.from_stored(tensors, record["padding_idx"]))
    elif kind == "group":
        layer = Int8Linear.from_stored(tensors) if record["layer"] == "int8" else Int4Linear.from_stored(tensors, record["in_features"])
        group = Int8Group.of(layer, record["sizes"])
        for index, part in enumerate(record["parts"]):
            _assign(model, part, Int8Part(group, index))
    else:
        raise ValueError(f"unknown record kind {kind!r}")


def _assign(model: nn.Module, name: str, value: nn.Module | torch.Tensor) -> None:
    """Put `value` in the place of the module, parameter or buffer `name` (a buffer stays persistent or not)."""
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    if isinstance(value, nn.Module):
        setattr(parent, leaf, value)
    elif leaf in parent._parameters:
        parent._parameters[leaf] = value
    elif leaf in parent._buffers:
        parent._buffers[leaf] = value
    else:
        raise ValueError(f"the model has no {name}")
