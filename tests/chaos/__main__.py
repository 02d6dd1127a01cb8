"""``./dev chaos [--cycles N] [--seed S] [--profile long|ci]``: a chaos run, its report as a table;
exit status 1 on any violation (2 when the run itself could not be carried out)."""

from __future__ import annotations

import argparse
import asyncio
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.harness import Chaos, default_pg_dsn
from tests.chaos.invariants import check
from tests.chaos.plan import PROFILES

EVIDENCE = "collected.pickle"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev chaos", description=__doc__)
    parser.add_argument("--cycles", type=int, help="fault cycles (default: the profile's, 100 for long)")
    parser.add_argument("--seed", type=int, help="seed of the fault schedule (default: the time)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="long")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, Redis data)")
    parser.add_argument("--database-url", default=default_pg_dsn(), help="PostgreSQL to proxy")
    parser.add_argument(
        "--recheck", type=Path, help="check the evidence a kept run saved in this directory again"
    )
    args = parser.parse_args(argv)
    if args.recheck is not None:
        with (args.recheck / EVIDENCE).open("rb") as f:
            report = check(pickle.load(f))
        print(report.table())
        return 1 if report.violation_count else 0
    profile = PROFILES[args.profile]
    profile = profile.with_(
        cycles=args.cycles if args.cycles is not None else profile.cycles,
        seed=args.seed if args.seed is not None else int(time.time()) % 1_000_000,
    )
    work = Path(tempfile.mkdtemp(prefix="cuefast-chaos-"))
    print(f"chaos: cuefast at {_git_head()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    print(
        f"chaos: profile {profile.name}, {profile.cycles} cycles, seed {profile.seed} (dir {work})",
        flush=True,
    )
    try:
        collected = asyncio.run(
            Chaos(profile, work, args.database_url, say=lambda s: print(s, flush=True)).run()
        )
    except Exception as exc:
        print(f"chaos: the run failed: {type(exc).__name__}: {exc} (logs kept in {work})", file=sys.stderr)
        return 2
    report = check(collected)
    print(report.table())
    failed = report.violation_count > 0
    if args.keep or failed:
        with (work / EVIDENCE).open("wb") as f:
            pickle.dump(collected, f)  # --recheck reads it (after a change to the checks)
        print(f"run directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def _git_head() -> str:
    """The commit the run tests (``+changes`` when the worktree has uncommitted changes)."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return sha + ("+changes" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    sys.exit(main())
