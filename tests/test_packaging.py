"""Packaging basics: the LICENSE matches the metadata, the Python versions claimed are the ones CI
runs, and requirements.lock (what the Docker image installs) pins every server dependency."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def test_license_file_matches_the_metadata() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert not any(c.startswith("License ::") for c in PROJECT["classifiers"])  # PEP 639: the expression only


def test_python_versions_claimed_are_the_ones_ci_runs() -> None:
    claimed = {
        c.rsplit(" :: ", 1)[1]
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    ci = (ROOT / ".ci" / "run").read_text()
    (others,) = re.findall(r'^PYTHONS="([\d. ]+)"$', ci, re.MULTILINE)
    assert claimed == {"3.11", *others.split()}  # 3.11: the machine's default, the whole suite
    assert PROJECT["requires-python"] == f">={min(claimed, key=Version)}"


def test_lock_pins_every_server_dependency_with_hashes() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {
        canonicalize_name(name): Version(version)
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", lock, re.MULTILINE)
    }
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", lock)
    for block in blocks[1:]:
        assert "--hash=sha256:" in block, block.splitlines()[0]
    server = [Requirement(r) for r in PROJECT["optional-dependencies"]["server"]]
    base = [Requirement(r) for r in PROJECT["dependencies"]]
    for req in (*base, *server):
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{req} vs {pinned[name]}"
    assert "uvloop" in pinned and "hiredis" in pinned
    assert "--find-links" not in lock and "--index-url" not in lock  # nothing of this machine
