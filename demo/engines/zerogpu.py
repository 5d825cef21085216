"""Hugging Face ZeroGPU: run the local engine's generation under `spaces.GPU`.

On a ZeroGPU Space (the `spaces` package installed and `SPACES_ZERO_GPU` set) a GPU is lent
only to functions decorated with `spaces.GPU`, which run in a forked worker: the answer's
pieces (plain strings) are what crosses back. Everywhere else this changes nothing, and the
`spaces` package is optional. Not run on a real ZeroGPU Space here (none is reachable): the
tests check the wiring with a stand-in `spaces` module.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

GPU_SECONDS = 120  # the longest one answer may hold the lent GPU


def zero_gpu_active() -> bool:
    return bool(os.environ.get("SPACES_ZERO_GPU")) and importlib.util.find_spec("spaces") is not None


def import_spaces_first() -> None:
    """On ZeroGPU, `spaces` must be imported before torch touches CUDA: call this before loading."""
    if zero_gpu_active():
        importlib.import_module("spaces")


def on_zero_gpu(engine):
    """`engine`, its `stream` decorated with `spaces.GPU` when on ZeroGPU; else `engine` as it is."""
    if zero_gpu_active():
        spaces = importlib.import_module("spaces")
        engine.stream = spaces.GPU(duration=GPU_SECONDS)(engine.stream)
    return engine
