"""Provenance recorded with every run: code version, libraries, device, hashes."""
from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = ("torch", "torchvision", "torchattacks", "adversarial-robustness-toolbox", "pysodmetrics", "open_clip_torch",
             "numpy")


NOT_CODE = (":(exclude)leaderboards",)  # what runs write: a rewritten table does not make the code dirty


def git_state() -> dict[str, str | bool | None]:
    """Commit of the working tree, whether its code has uncommitted changes (tracked files changed, or
    files git does not ignore added; the leaderboards runs write do not count) and, if so,
    ``diff_sha256``: a hash of those changes, so two runs on the same uncommitted code are recognisably
    the same code. None values outside git."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = git("rev-parse", "HEAD")
    diff = git("diff", "HEAD", "--binary", "--", ".", *NOT_CODE)
    untracked = git("ls-files", "--others", "--exclude-standard", "-z", "--", ".", *NOT_CODE)
    if commit is None or diff is None or untracked is None:
        return {"commit": None, "dirty": None}
    state: dict[str, str | bool | None] = {"commit": commit.strip(), "dirty": bool(diff or untracked)}
    if state["dirty"]:
        h = hashlib.sha256(diff.encode())
        for name in sorted(filter(None, untracked.split("\0"))):
            path = REPO / name
            h.update(name.encode())  # a symlink (e.g. to a shared venv folder) by its target, a file by content
            h.update((str(path.readlink()) if path.is_symlink() else sha256_file(path)).encode())
        state["diff_sha256"] = h.hexdigest()
    return state


def code_state() -> dict[str, object]:
    """What computed a cell: the git state and the library versions. A cell stored under another
    code state is recomputed on resume unless the run explicitly reuses it."""
    return {**git_state(), "libraries": library_versions()}


def library_versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    out["python"] = platform.python_version()
    return out


def device_info(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stable_seed(*parts: object) -> int:
    """A 32-bit seed from a hash of ``parts``: the same on every machine and run."""
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def sha256_json(obj: object) -> str:
    import json
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
