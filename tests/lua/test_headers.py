"""Every Lua script's header against the ``Script`` its wrapper calls it with: the names and order
of KEYS and ARGV, "now" at ARGV[1], consumer groups passed in; and how scripts are loaded
(includes resolved transitively, each lib once; the ``STATUS`` table of ``status.Status``)."""

from __future__ import annotations

import importlib.resources
import re
from typing import NamedTuple

import pytest

from cuefast.store import SCRIPTS
from cuefast.store.scripts import Script, load_lua
from cuefast.store.status import Status

LUA = importlib.resources.files("cuefast.store.lua")
ENTRY = re.compile(r"^\s+(KEYS|ARGV)\[(\d+)(\.\.)?\] (\w+)(:|$)", re.MULTILINE)
BY_NAME = {s.name: s for s in SCRIPTS}


class Header(NamedTuple):
    name: str
    keys: tuple[str, ...]
    argv: tuple[str, ...]
    rest: str
    text: str


def header(name: str) -> Header:
    """The header comment of ``lua/<name>.lua``: ``--[[ <name>: …``, one ``KEYS[i] <name>: …`` /
    ``ARGV[i] <name>: …`` line per key and argument in order (``ARGV[i..]``: the rest), ``returns``."""
    source = LUA.joinpath(f"{name}.lua").read_text()
    assert source.startswith("--[["), f"{name}.lua: no header"
    text = source[: source.index("]]") + 2]
    first = re.match(r"--\[\[ (\w+): ", text)
    assert first is not None, f"{name}.lua: the header starts with '--[[ <name>: '"
    found: dict[str, list[tuple[int, str, bool]]] = {"KEYS": [], "ARGV": []}
    for kind, i, rest, entry, _ in ENTRY.findall(text):
        found[kind].append((int(i), entry, bool(rest)))
    for kind, entries in found.items():
        assert [i for i, _, _ in entries] == list(range(1, len(entries) + 1)), (
            f"{name}.lua: {kind} out of order"
        )
        assert all(not r for _, _, r in entries[:-1]), f"{name}.lua: only the last {kind} can be a rest"
    keys, argv = found["KEYS"], found["ARGV"]
    assert keys and not keys[-1][2], f"{name}.lua: KEYS are fixed"
    rest = argv[-1][1] if argv and argv[-1][2] else ""
    return Header(
        first.group(1),
        tuple(n for _, n, _ in keys),
        tuple(n for _, n, r in argv if not r),
        rest,
        text,
    )


def lua_files() -> list[str]:
    return sorted(f.name[:-4] for f in LUA.iterdir() if f.name.endswith(".lua"))


def test_every_script_file_has_one_wrapper_and_back() -> None:
    assert len(BY_NAME) == len(SCRIPTS), "two wrappers declare one script"
    assert sorted(BY_NAME) == lua_files()


@pytest.mark.parametrize("name", lua_files())
def test_the_header_matches_the_wrapper(name: str) -> None:
    h, script = header(name), BY_NAME[name]
    assert h.name == name
    assert Script(h.name, h.keys, h.argv, h.rest) == script
    assert "\n  returns " in h.text, f"{name}.lua: the header says what it returns"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_now_is_the_first_argument(script: Script) -> None:
    """Every script that takes the clock takes it as ARGV[1], and no other argument is a time of
    "now" (no ``now_us``/``now_s`` spelled differently)."""
    assert all(a == "now" or "now" not in a for a in script.argv), script
    if "now" in script.argv:
        assert script.argv[0] == "now", script


@pytest.mark.parametrize("name", lua_files())
def test_consumer_groups_come_in_as_arguments(name: str) -> None:
    body = load_lua(name)
    assert not re.search(r"'(XACK|XREADGROUP|XAUTOCLAIM|XCLAIM)', KEYS\[\d+\], '", body), name
    assert "dispatchers" not in body and "notifiers" not in body, name


@pytest.mark.parametrize("name", lua_files())
def test_status_codes_are_the_table(name: str) -> None:
    """Script bodies name their codes (``STATUS.NOT_FOUND``), never bare ``return {-1}``."""
    body = load_lua(name)
    assert not re.search(r"return \{?-\d", body), name
    assert body.count("local STATUS = {") == 1


def test_the_status_table_is_the_enum() -> None:
    table = load_lua("cues_create").split("local STATUS = {", 1)[1].split("}", 1)[0]
    assert dict(
        (name.strip(), int(value)) for name, value in (pair.split("=") for pair in table.split(","))
    ) == {s.name: s.value for s in Status}
    assert len({s.value for s in Status}) == len(Status)


def test_includes_resolve_transitively_each_lib_once() -> None:
    """``outcomes_record.lua`` includes only ``record_outcome``, which includes ``alert`` (which
    includes ``set_cue_status`` and ``dirty``) and the rest: every function once, none missing."""
    source = LUA.joinpath("outcomes_record.lua").read_text()
    assert re.findall(r"^--!include (\w+)$", source, re.MULTILINE) == ["record_outcome"]
    text = load_lua("outcomes_record")
    assert "--!include" not in text
    functions = re.findall(r"^local function (\w+)", text, re.MULTILINE)
    assert len(functions) == len(set(functions))
    for needed in ("dirty", "set_cue_status", "decides_cue", "work_rem", "alert_streak", "record_outcome"):
        assert needed in functions, needed
    assert functions.index("dirty") < functions.index("set_cue_status") < functions.index("record_outcome")
