"""Virtualenvs holding the official CueAPI clients, pinned, created once and reused.

The SDK (``cueapi-sdk``) and the CLI (``cueapi``) both install a top-level package named
``cueapi``, so they live in separate venvs: the SDK shares one with ``cueapi-worker``
(which does not depend on it), the CLI has its own. A venv lives at
``.cuefast/official-venvs/<name>-<hash of the pins and the Python version>`` and is
reused while its pins are unchanged; a ``.complete`` stamp marks a finished install, and
a file lock keeps two test sessions from building the same venv at once. A failed install
fails the test run loudly with pip's output (it is never skipped).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_ROOT = ROOT / ".cuefast" / "official-venvs"

SDK_PINS = ("cueapi-sdk==0.1.3", "cueapi-worker==0.3.0")
CLI_PINS = ("cueapi==0.2.0",)


class VenvError(RuntimeError):
    """The venv could not be created or its packages could not be installed."""


@dataclass(frozen=True)
class Venv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name


def venv_path(name: str, pins: tuple[str, ...], root: Path = VENV_ROOT) -> Path:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256("\n".join([version, *sorted(pins)]).encode()).hexdigest()[:12]
    return root / f"{name}-{digest}"


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if res.returncode != 0:
        raise VenvError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")


def ensure_venv(name: str, pins: tuple[str, ...], root: Path = VENV_ROOT) -> Venv:
    """The venv for ``pins``, built now unless a complete one exists."""
    path = venv_path(name, pins, root)
    stamp = path / ".complete"
    if stamp.exists():
        return Venv(path)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building it right now
        if stamp.exists():
            return Venv(path)
        shutil.rmtree(path, ignore_errors=True)  # a half-built leftover
        # Built in place: console-script shebangs hold the absolute path, so no rename.
        _run([sys.executable, "-m", "venv", str(path)], "venv creation")
        venv = Venv(path)
        _run(
            [str(venv.python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *pins],
            f"pip install {' '.join(pins)}",
        )
        _run([str(venv.python), "-m", "pip", "check"], "pip check")
        stamp.write_text("\n".join(pins) + "\n")
        return venv
