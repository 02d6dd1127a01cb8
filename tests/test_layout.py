"""The package layout: docs/DESIGN.md's module map, import boundaries, docstrings, module sizes."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cuefast"
MAX_LINES = 600
SERVER = frozenset(
    {
        "store",
        "services",
        "engine",
        "durability",
        "api",
        "dashboard",
        "embedded",
        "runtime",
        "metrics",
        "__main__",
    }
)
"""the rows whose code only the server install can run"""

# Today's exceptions, each with the change that removes it. A rule fails on an offender missing
# here, and test_no_stale_exceptions on one listed here that is gone: both sets only shrink.
KNOWN_OFFENDERS: frozenset[tuple[str, str]] = frozenset()  # none left
OVERSIZED: frozenset[str] = frozenset()  # none left


@dataclass(frozen=True)
class Import:
    module: str
    """absolute dotted name (for ``from a import b``: ``a.b`` when that is a cuefast module)"""
    typing_only: bool
    """inside ``if TYPE_CHECKING:``"""
    optional: bool
    """inside a ``try`` that catches ImportError"""


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def row(self) -> str:
        """Its row in the module map: the subpackage, or the top-level module's name."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else "__init__"


@cache
def modules() -> dict[str, Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        out[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    return out


def _catches_import_error(node: ast.Try) -> bool:
    names = {"ImportError", "ModuleNotFoundError"}
    for handler in node.handlers:
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(t, ast.Name) and t.id in names for t in types):
            return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    node: ast.AST, typing_only: bool = False, optional: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, typing_only, optional
    for name, value in ast.iter_fields(node):
        children = value if isinstance(value, list) else [value]
        for child in children:
            if not isinstance(child, ast.AST):
                continue
            yield from _import_nodes(
                child,
                typing_only or (isinstance(node, ast.If) and name == "body" and _is_type_checking(node.test)),
                optional or (isinstance(node, ast.Try) and name == "body" and _catches_import_error(node)),
            )


def imports_in(tree: ast.Module, package: str) -> tuple[Import, ...]:
    """The imports of a module of ``package`` (relative ones made absolute)."""
    out = []
    for node, typing_only, optional in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules() else base for a in node.names]
        out += [Import(t, typing_only, optional) for t in targets]
    return tuple(out)


@cache
def imports(name: str) -> tuple[Import, ...]:
    mod = modules()[name]
    return imports_in(mod.tree, name if mod.path.name == "__init__.py" else name.rpartition(".")[0])


def top(module: str) -> str:
    return module.split(".", maxsplit=1)[0]


def owner(name: str) -> str | None:
    """The cuefast module that defines ``name`` (itself, or the package it was imported from)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def row_of(name: str) -> str | None:
    """The map row of a cuefast name (``cuefast.store.keys`` → ``store``), else None."""
    module = owner(name)
    return modules()[module].row if module else None


def is_third_party(module: str) -> bool:
    return top(module) not in sys.stdlib_module_names and top(module) not in ("cuefast", "__future__")


def assert_none(found: set[tuple[str, str]], what: str = "") -> None:
    assert not found, "\n".join([what, *(f"{path}: {offence}" for path, offence in sorted(found))])


# --- the module map of docs/DESIGN.md ----------------------------------------------------


@dataclass(frozen=True)
class Row:
    names: frozenset[str]
    may_import: frozenset[str]
    needs: frozenset[str]


def _ticks(cell: str) -> list[str]:
    return [t.rstrip("/") for t in re.findall(r"`([^`]+)`", cell)]


@cache
def module_map() -> dict[str, Row]:
    """Row name → its row, from the "Module map" table of docs/DESIGN.md."""
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| package")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    foundation = frozenset(_ticks(next(c[0] for c in cells if c[0].startswith("foundation:"))))
    every = frozenset(t for c in cells for t in _ticks(c[0]))
    out = {}
    for first, _, may, needs in cells:
        names = frozenset(_ticks(first))
        words = set(re.sub(r"`[^`]*`|\([^)]*\)", " ", may).replace(",", " ").split())
        allowed = set(_ticks(re.sub(r"\([^)]*\)", " ", may)))
        allowed |= foundation if "foundation" in words else set()
        allowed |= every if "anything" in words else set()
        row = Row(names, frozenset(allowed | names), frozenset(_ticks(needs)))
        out.update(dict.fromkeys(names, row))
    return out


def test_every_module_has_a_row_in_the_map() -> None:
    rows = module_map()
    assert not sorted({m.row for m in modules().values()} - set(rows)), "add a row to docs/DESIGN.md"
    assert not sorted(set(rows) - {m.row for m in modules().values()}), "a row names no module"


def map_offenders() -> set[tuple[str, str]]:
    rows = module_map()
    found = set()
    for mod in modules().values():
        row = rows[mod.row]
        for imp in imports(mod.name):
            if imp.typing_only:
                continue
            if is_third_party(imp.module):
                if top(imp.module) not in row.needs:
                    found.add((mod.rel, f"imports {top(imp.module)}"))
            elif top(imp.module) == "cuefast" and imp.module != "cuefast":
                target = row_of(imp.module)
                if target not in row.may_import:
                    found.add((mod.rel, f"imports {imp.module}"))
    return found


def test_imports_follow_the_module_map() -> None:
    assert_none(map_offenders() - KNOWN_OFFENDERS)


# --- the boundaries that hold whatever the map says -------------------------------------------


def redis_offenders() -> set[tuple[str, str]]:
    """Redis is reached only from store/ (and embedded/, which starts a server)."""
    found = set()
    for mod in modules().values():
        if mod.row in ("store", "embedded"):
            continue
        if any(top(imp.module) == "redis" for imp in imports(mod.name)):
            found.add((mod.rel, "imports redis"))
        if any(isinstance(n, ast.Attribute) and n.attr == "redis" for n in ast.walk(mod.tree)):
            found.add((mod.rel, "uses .redis"))
    return found


def test_only_the_store_talks_to_redis() -> None:
    assert_none(redis_offenders() - KNOWN_OFFENDERS)


def test_only_the_api_and_the_dashboard_use_litestar() -> None:
    users = {m.row for m in modules().values() for i in imports(m.name) if top(i.module) == "litestar"}
    assert users == {"api", "dashboard"}


def test_store_and_services_stay_below_their_callers() -> None:
    def rows_imported(row: str) -> set[str]:
        return {
            r
            for m in modules().values()
            if m.row == row
            for i in imports(m.name)
            if (r := row_of(i.module)) is not None and i.module != "cuefast"
        }

    assert rows_imported("store") & {"services", "engine", "api", "durability", "runtime"} == set()
    assert rows_imported("services") & {"api", "engine", "runtime"} == set()


def base_dependencies() -> set[str]:
    """The import names of pyproject's ``[project] dependencies``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dists = (re.match(r"[A-Za-z0-9_.-]+", d) for d in project["dependencies"])
    return {d.group(0).lower().replace("-", "_") for d in dists if d}


def closure(roots: list[str]) -> set[str]:
    """Every cuefast module that importing ``roots`` runs (parent packages included)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parent = name.rpartition(".")[0]
        todo += [parent] if parent else []
        for imp in imports(name):
            module = owner(imp.module)
            if module and not imp.typing_only and not imp.optional:
                todo.append(module)
    return seen


def test_sdk_and_worker_need_only_the_base_install() -> None:
    roots = [m.name for m in modules().values() if m.row in ("client", "worker", "__init__")]
    reached = closure(roots)
    assert sorted(n for n in reached if modules()[n].row in SERVER) == []
    third = {top(i.module) for n in reached for i in imports(n) if is_third_party(i.module)}
    needed = {
        top(i.module) for n in reached for i in imports(n) if is_third_party(i.module) and not i.optional
    }
    assert needed <= base_dependencies(), (needed, base_dependencies())
    assert third - needed <= {"uvloop"}  # optional: used when installed


# --- every module ------------------------------------------------------------------------------


def docstring_offenders() -> set[tuple[str, str]]:
    """Each module opens with a one-line docstring (more paragraphs may follow a blank line)."""
    found = set()
    for mod in modules().values():
        doc = ast.get_docstring(mod.tree, clean=True)
        lines = (doc or "").splitlines()
        if not lines or not lines[0].strip() or (len(lines) > 1 and lines[1].strip()):
            found.add((mod.rel, "docstring"))
    return found


def test_every_module_opens_with_a_one_line_docstring() -> None:
    assert_none(docstring_offenders() - KNOWN_OFFENDERS)


def oversized() -> set[str]:
    return {m.rel for m in modules().values() if len(m.path.read_text().splitlines()) > MAX_LINES}


def test_no_module_is_over_600_lines() -> None:
    assert_none({(path, f"over {MAX_LINES} lines") for path in oversized() - OVERSIZED})


def test_no_stale_exceptions() -> None:
    """An exception whose offence is gone is removed from its list, so the lists only shrink."""
    found = map_offenders() | redis_offenders() | docstring_offenders()
    assert_none(KNOWN_OFFENDERS - found, "fixed: remove from KNOWN_OFFENDERS")
    assert_none({(path, "") for path in OVERSIZED - oversized()}, "fixed: remove from OVERSIZED")


SAMPLE = """
from typing import TYPE_CHECKING
import redis.asyncio
from .. import errors
from ..times import fmt_z
if TYPE_CHECKING:
    from cuefast.runtime import Runtime
try:
    import uvloop
except (ImportError, OSError):
    pass
def later():
    from cuefast import config
"""


def test_the_checks_see_what_they_check() -> None:
    """The scanner finds every kind of import (a broken scanner would pass everything)."""
    assert imports_in(ast.parse(SAMPLE), "cuefast.store") == (
        Import("typing", False, False),
        Import("redis.asyncio", False, False),
        Import("cuefast.errors", False, False),
        Import("cuefast.times", False, False),
        Import("cuefast.runtime", True, False),
        Import("uvloop", False, True),
        Import("cuefast.config", False, False),
    )
    assert {"cuefast", "cuefast.client"} < closure(["cuefast.client"])  # parents and imports
    assert {"httpx", "msgspec"} <= base_dependencies()
    assert module_map()["cron"].names == module_map()["ssrf"].names
    assert module_map()["__main__"].may_import >= set(module_map())
