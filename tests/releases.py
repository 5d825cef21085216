"""Check, and adopt, new releases of what requirements.txt pins: `python -m tests.releases [--adopt]`.

requirements.txt has two parts. The first names the packages the app imports, each pinned to the
release the suite runs (torch and torchvision as a range: see that file). The second, below
:data:`LOCK_MARK`, pins everything those pull in, so that `pip install -r requirements.txt` gives
exactly the versions the suite runs, on any day.

This command builds a fresh virtualenv, installs the newest release of each package of the first
part (torch and torchvision within their range), installs requirements-test.txt on top with the
new versions as constraints (so the test tools cannot move them), runs the whole suite there and
prints what changed. With `--adopt`, and only if the suite passed, it writes the new versions into
requirements.txt (and the Space's `sdk_version`, Gradio's); commit that with the suite's result.

It needs the package registry and takes a while (torch alone is several GB); it is not part of
the suite. `tests/test_requirements.py` checks, in every run, that what is installed is what
requirements.txt pins.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
README = ROOT / "README.md"
LOCK_MARK = "# What those pull in, pinned by `python -m tests.releases --adopt`:"
# torch's own CUDA runtime: ZeroGPU installs its torch with its own (see requirements.txt), so
# they follow the torch that is installed rather than a pin.
UNLOCKED = re.compile(r"^(nvidia-.*|cuda-.*|triton|torch|torchvision|sympy|mpmath|networkx|setuptools|pip)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split(text: str) -> tuple[list[str], list[str]]:
    """The file's lines before the lock (header and direct requirements) and the lock's lines."""
    lines = text.splitlines()
    if LOCK_MARK not in lines:
        raise ValueError(f"requirements.txt has no line {LOCK_MARK!r}")
    at = lines.index(LOCK_MARK)
    return lines[: at + 1], lines[at + 1 :]


def requirement_of(line: str) -> Requirement | None:
    text = line.split("#", 1)[0].strip()
    return Requirement(text) if text and not text.startswith("-") else None


def direct(text: str) -> list[Requirement]:
    """The packages the app imports, as requirements.txt pins them."""
    head, _ = split(text)
    return [r for r in map(requirement_of, head) if r is not None]


def pins(text: str) -> dict[str, str]:
    """Every exact pin in requirements.txt, canonical name -> version."""
    found = {}
    for line in text.splitlines():
        req = requirement_of(line)
        if req is not None:
            exact = [s.version for s in req.specifier if s.operator == "=="]
            if exact:
                found[canonical(req.name)] = exact[0]
    return found


def newest_spec(req: Requirement) -> str:
    """What to ask pip for to get the newest release: a range stays a range, an exact pin is lifted."""
    if any(s.operator == "==" for s in req.specifier):
        return req.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "")
    return str(req)


def rewrite(text: str, frozen: dict[str, str], names: dict[str, str]) -> str:
    """requirements.txt with the direct pins moved to `frozen` and the lock replaced by it."""
    head, _ = split(text)
    direct_names = set()
    out = []
    for line in head:
        req = requirement_of(line)
        if req is not None and any(s.operator == "==" for s in req.specifier):
            key = canonical(req.name)
            direct_names.add(key)
            line = re.sub(r"==\s*[^\s;#]+", f"=={frozen[key]}", line, count=1)
        elif req is not None:
            direct_names.add(canonical(req.name))
        out.append(line)
    lock = sorted(k for k in frozen if k not in direct_names and not UNLOCKED.match(k))
    out += [f"{names[k]}=={frozen[k]}" for k in lock]
    return "\n".join(out) + "\n"


def run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def freeze(python: Path) -> tuple[dict[str, str], dict[str, str]]:
    out = subprocess.run([str(python), "-m", "pip", "freeze", "--all"], check=True, capture_output=True, text=True).stdout
    versions, names = {}, {}
    for line in out.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            versions[canonical(name)] = version.strip()
            names[canonical(name)] = name
    return versions, names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adopt", action="store_true", help="write the new versions into requirements.txt if the suite passes")
    parser.add_argument("--pytest-args", default="", help="extra arguments for the suite, e.g. '-m \"not browser\"'")
    args = parser.parse_args(argv)

    text = REQUIREMENTS.read_text()
    with tempfile.TemporaryDirectory(prefix="qwen-chat-releases-") as tmp:
        venv = Path(tmp) / "venv"
        run([sys.executable, "-m", "venv", str(venv)])
        python = venv / "bin" / "python"
        run([str(python), "-m", "pip", "install", "-q", *[newest_spec(r) for r in direct(text)]])
        frozen, names = freeze(python)
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("".join(f"{names[k]}=={v}\n" for k, v in frozen.items()))
        test_only = [line for line in (ROOT / "requirements-test.txt").read_text().splitlines() if not line.startswith("-r")]
        (Path(tmp) / "test.txt").write_text("\n".join(test_only) + "\n")
        run([str(python), "-m", "pip", "install", "-q", "-r", str(Path(tmp) / "test.txt"), "-c", str(constraints)])

        old = pins(text) | {canonical(r.name): str(r.specifier) for r in direct(text) if canonical(r.name) not in pins(text)}
        print("\npackage: pinned (or range) -> newest")
        for key in sorted(old):
            if frozen.get(key) != old[key]:
                print(f"  {names.get(key, key)}: {old[key]} -> {frozen.get(key, 'not installed')}")
        for key in sorted(set(frozen) - set(old) - {k for k in frozen if UNLOCKED.match(k)}):
            print(f"  {names[key]}: new -> {frozen[key]}")
        suite = subprocess.run([str(python), "-m", "pytest", *args.pytest_args.split()], cwd=ROOT)
        print(f"\nthe suite on the newest releases: {'passed' if suite.returncode == 0 else 'FAILED'}")
        if args.adopt and suite.returncode == 0:
            REQUIREMENTS.write_text(rewrite(text, frozen, names))
            readme = README.read_text()
            README.write_text(re.sub(r"(?m)^sdk_version: .*$", f"sdk_version: {frozen['gradio']}", readme, count=1))
            print("requirements.txt and the Space's sdk_version now pin them: commit with the suite's result")
        return suite.returncode


if __name__ == "__main__":
    sys.exit(main())
