"""What people install is what is tested, and it builds where they host.

- requirements.txt pins every package (bar torch's own CUDA runtime) to the version installed
  here, so `pip install -r requirements.txt` gives what the suite runs; requirements-test.txt
  adds test tools and pins none of those again.
- The Space's front matter and requirements match ZeroGPU's published lists (hub-docs
  `docs/hub/spaces-zerogpu.md`, "Supported Versions", as of PR #2763, 2026-09-04).
- The code uses nothing that the Space's Python (3.12) removed. This machine has only Python
  3.11: what 3.12 itself would say was not run here (README "Hugging Face Spaces").
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests import releases
from tests.test_spaces import front_matter

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = (ROOT / "requirements.txt").read_text()
TEST = (ROOT / "requirements-test.txt").read_text()

# ZeroGPU's Pythons and PyTorch versions with the torchvision released beside each.
ZEROGPU_PYTHONS = ("3.12.12", "3.10.13")
ZEROGPU_TORCH = {"2.8.0": "0.23.0", "2.9.1": "0.24.1", "2.10.0": "0.25.0", "2.11.0": "0.26.0", "2.12.1": "0.27.1", "2.13.0": "0.28.0"}

# What Python 3.12 removed ("What's New In Python 3.12", Removed), as the code would spell it.
REMOVED_IN_312 = {
    "modules": {"distutils", "imp", "asynchat", "asyncore", "smtpd"},
    "calls": re.compile(
        r"\b(SafeConfigParser|\.readfp\(|ssl\.wrap_socket|ssl\.match_hostname|locale\.format\(|io\.OpenWrapper"
        r"|assertEquals|assertNotEquals|assertRegexpMatches|failUnless|failIf|assertDictContainsSubset"
        r"|typing\.io\b|typing\.re\b|pkgutil\.ImpImporter|sqlite3\.enable_shared_cache)"
    ),
}


def local_version(name: str) -> Version:
    """The installed version without a local label (torch's '+cu130')."""
    return Version(Version(metadata.version(name)).public)


def top_of(spec: SpecifierSet) -> str:
    (upper,) = [s.version for s in spec if s.operator == "<="]
    return upper


def test_every_pin_is_what_is_installed():
    for name, version in releases.pins(RUNTIME).items():
        assert metadata.version(name) == version, f"requirements.txt pins {name}=={version}"


def test_torch_and_torchvision_are_the_newest_pair_their_range_admits():
    """A local install takes the top of the range: the pair installed here."""
    ranges = {releases.canonical(r.name): r.specifier for r in releases.direct(RUNTIME) if r.name in ("torch", "torchvision")}
    for name, spec in ranges.items():
        assert str(local_version(name)) == top_of(spec), name


def closure(names: list[str]) -> set[str]:
    """Every installed distribution these require, directly or not (markers evaluated here, no extras)."""
    seen: set[str] = set()
    todo = [releases.canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(releases.canonical(req.name))
    return seen


def test_everything_the_app_pulls_in_is_pinned():
    pinned = set(releases.pins(RUNTIME)) | {"torch", "torchvision"}
    pulled = closure([r.name for r in releases.direct(RUNTIME)])
    missing = sorted(n for n in pulled - pinned if not releases.UNLOCKED.match(n))
    assert missing == [], "pin them: python -m tests.releases --adopt"


def test_the_test_requirements_pin_no_runtime_package_again():
    runtime = set(releases.pins(RUNTIME)) | {"torch", "torchvision"}
    assert "-r requirements.txt" in TEST.splitlines()
    for line in TEST.splitlines():
        req = releases.requirement_of(line)
        if req is not None and releases.canonical(req.name) in runtime:
            assert not req.specifier, f"{line!r}: its version comes from requirements.txt"


def test_the_space_runs_on_a_zerogpu_python_with_the_gradio_pinned():
    meta = front_matter()
    assert str(meta["python_version"]) in ZEROGPU_PYTHONS
    assert meta["sdk_version"] == releases.pins(RUNTIME)["gradio"]


def test_the_torch_range_admits_zerogpus_newest_pytorch_and_its_torchvision():
    spec = {r.name: r.specifier for r in releases.direct(RUNTIME)}
    admitted = [t for t in ZEROGPU_TORCH if t in spec["torch"]]
    newest = max(ZEROGPU_TORCH, key=Version)
    assert newest in admitted
    for torch_version in admitted:  # each admitted torch has its own torchvision in range
        assert ZEROGPU_TORCH[torch_version] in spec["torchvision"]


@pytest.mark.parametrize(
    "line, pinned",
    [
        ("gradio==6.31.0", {"gradio": "6.31.0"}),  # an exact pin
        ("torch>=2.13.0,<=2.14.1", {}),  # a range pins nothing
        ("av==18.1.0  # a comment", {"av": "18.1.0"}),  # a comment after the pin
        ("-r requirements.txt", {}),  # an include is not a requirement
        ("Jinja2==3.1.6", {"jinja2": "3.1.6"}),  # names compare canonically
    ],
)
def test_pins_reads_each_line_shape(line, pinned):
    assert releases.pins(line) == pinned


def test_rewrite_moves_direct_pins_and_relocks_the_rest():
    text = f"# header\ntorch>=2.13.0,<=2.14.1\ngradio==6.30.0  # the UI\n{releases.LOCK_MARK}\nold-dep==1.0\n"
    frozen = {"torch": "2.14.1", "gradio": "6.31.0", "new-dep": "2.0", "nvidia-cublas": "13.1", "starlette": "1.10.0"}
    names = {k: k for k in frozen}
    out = releases.rewrite(text, frozen, names)
    assert out == (
        f"# header\ntorch>=2.13.0,<=2.14.1\ngradio==6.31.0  # the UI\n{releases.LOCK_MARK}\nnew-dep==2.0\nstarlette==1.10.0\n"
    )


def python_files() -> list[Path]:
    here = Path(__file__).resolve()  # this file spells the removed names in its table
    return [p for p in ROOT.rglob("*.py") if p != here and not {"node_modules", ".git"} & set(p.parts)]


def test_nothing_python_3_12_removed_is_used():
    for path in python_files():
        source = path.read_text()
        tree = ast.parse(source, filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & REMOVED_IN_312["modules"], f"{path}:{node.lineno}"
        found = REMOVED_IN_312["calls"].search(source)
        assert found is None, f"{path}: {found.group(0) if found else ''}"
