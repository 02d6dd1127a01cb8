"""The invariants a chaos run checks, and its report.

Checked on what the run collected (``harness.Collected``): the public API's listings (every page),
Redis read directly (every execution hash under the prefix, indexes, queues, dirty sets), the
PostgreSQL rows of the run's schema after a final snapshot, the receivers' request logs and the
worker handler's log — never on the engine's own idea of what happened.

Violations (any one fails the run):

* **slots** — every recurring cue has exactly one execution per slot from its first ``next_run``
  to the ``next_run`` read once the schedulers had caught up (no gap, no second execution, the
  deterministic id of ``cuefast.ids.scheduled_execution_id``); a one-time cue fired exactly once
  and ended ``completed``/``failed`` with its execution;
* **fires** — every manual fire answered one execution id (a repeat with the same idempotency
  key the same one), and no manual execution exists that no fire created;
* **delivery** — every execution that became due was delivered (a receiver logged it) or claimed
  (the handler log has it), or failed by policy without reaching anyone (connection refused or
  timed out until its attempts ran out; never claimed until ``missed``); every request was
  correctly signed and numbered; no attempt number beyond what the execution counts;
* **terminal** — every execution ends in a terminal state, unless a documented window
  (``WINDOWS``) explains it;
* **outcomes** — every outcome stored is the one its reporter produced (harness POST, response
  body, worker handler); none is lost once reported; none changed after it was first seen;
  none appears where nobody reported one;
* **listings** — no execution or cue twice in any listing, every page set equals Redis's index,
  totals match, nothing claimable after the drain;
* **state** — no index entry without its hash and no hash outside its indexes; no finished
  execution left in a lease, retry, delayed, deadline, claim or work queue or in the outbox;
* **durability** — after the final snapshot no dirty mark is left and PostgreSQL holds every
  execution, cue and account exactly as Redis does (and no execution Redis does not);
* **process behaviour** — no HTTP 500 from the API, every SIGTERM ends in exit code 0,
  ``cuefast snapshot`` succeeds.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from cuefast.ids import scheduled_execution_id
from cuefast.services.outcomes import render_outcome
from cuefast.store.keys import Keys
from tests.chaos.harness import PREFIX, TERMINAL, Collected, outcome_source, outcome_success
from tests.chaos.worker_app import outcome_for

SECOND = 1_000_000

TRIM_WINDOW = "listed twice while a trim batch was in flight"
WINDOWS = {
    "stale window after a dispatcher kill -9": (
        "an attempt in flight in a dispatcher killed with -9 stays `delivering` until its lease "
        "expires: max(CUEFAST_WEBHOOK_STALE_SECONDS, CUEFAST_WEBHOOK_TIMEOUT_SECONDS + 60 s)"
    ),
    "stale window after a Redis restart": (
        "an attempt whose result could not be recorded because Redis went away (the request was "
        "sent, the result write failed) stays `delivering` until its lease expires, like one in "
        "a killed dispatcher"
    ),
    TRIM_WINDOW: (
        "retention flips rows to PostgreSQL's history before it removes them from Redis: a listing "
        "made between the two steps shows them twice (never misses one); only seen during the run"
    ),
    "worker lease after a worker kill -9": (
        "a claim held by a worker daemon killed with -9 stays `delivering` until its lease "
        "(CUEFAST_WORKER_LEASE_SECONDS) expires and its worker stops counting as alive"
    ),
}

KNOWN: dict[str, str] = {}
"""Violation kinds an open defect explains (being fixed elsewhere): the short run in ``./dev
test`` is an expected failure while only these occur. Remove an entry once its fix is merged."""
POLICY_ERRORS = frozenset({"Could not connect to webhook endpoint", "Webhook endpoint timed out"})


@dataclass
class Report:
    profile: str
    seed: int
    cycles: int
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    counts: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def bad(self, kind: str, detail: str) -> None:
        self.violations[kind].append(detail)

    def note(self, kind: str, detail: str) -> None:
        self.notes[kind].append(detail)

    @property
    def violation_count(self) -> int:
        return sum(len(v) for v in self.violations.values())

    @property
    def only_known(self) -> bool:
        """Every violation is of a kind an open defect explains (``KNOWN``)."""
        return bool(self.violations) and set(self.violations) <= set(KNOWN)

    def table(self, examples: int = 3) -> str:
        """The report: the run, the faults of each kind, what was checked, the violations."""
        head = (
            f"chaos run: profile {self.profile}, seed {self.seed}, {self.cycles} cycles, {self.seconds:.0f} s"
        )
        out = ["", "=" * 78, head, "-" * 78]
        counts = sorted(self.counts.items())

        def rows(*prefixes: str) -> list[tuple[str, int]]:
            return [(k.strip(), v) for k, v in counts if k.startswith(prefixes)]

        sections = [
            ("faults", sorted(self.faults.items())),
            ("checked", [(k, v) for k, v in counts if not k.startswith(("  ", "seconds"))]),
            ("executions by status / trigger", rows("  status", "  triggered_by")),
            ("API answers seen by the load", rows("  API")),
            ("time", rows("seconds")),
        ]
        for title, rows in sections:
            if not rows:
                continue
            out.append(f"{title}:")
            out += [f"  {k:<58} {v:>10}" for k, v in rows]
        out.append(f"{'VIOLATIONS' if self.violations else 'violations'}: {self.violation_count}")
        for kind, items in sorted(self.violations.items()):
            known = f"  [known defect {KNOWN[kind]}]" if kind in KNOWN else ""
            out.append(f"  {kind}: {len(items)}{known}")
            out += [f"      {item}" for item in items[:examples]]
        if self.notes:
            out.append("notes (not violations):")
            for kind, items in sorted(self.notes.items()):
                out.append(f"  {kind}: {len(items)}")
                out += [f"      {item}" for item in items[:examples]]
        out.append("=" * 78)
        return "\n".join(out)


def check(c: Collected) -> Report:
    rep = Report(c.profile.name, c.profile.seed, c.profile.cycles)
    rep.seconds = c.timings.get("total", 0.0)
    for f in c.faults:
        fault = f.fault
        label = f"{fault.kind} {fault.target}" if fault.kind in ("kill9", "sigterm") else fault.kind
        if fault.kind == "receiver_pause":
            label = f"receiver_pause {fault.target.split(':')[1]}"
        rep.faults[label] += 1
    keys = Keys(PREFIX, int(c.profile.env["CUEFAST_PARTITIONS"]))
    execs = c.execs
    rep.counts["executions checked"] = len(execs)
    for h in execs.values():
        rep.counts[f"  triggered_by {h.get('tb') or 'scheduled'}"] += 1
        rep.counts[f"  status {h.get('st')}"] += 1
    rep.counts["webhook requests received"] = len(c.deliveries)
    rep.counts["worker handler runs"] = len(c.handler_log)
    rep.counts["manual fires"] = len(c.fires)
    rep.counts["outcomes POSTed by the harness"] = len(c.posted)
    for st, n in c.http_statuses.items():
        rep.counts[f"  API answers {st}"] += n
    _slots(c, rep, keys)
    _fires(c, rep)
    _delivery(c, rep)
    _outcomes(c, rep)
    _listings(c, rep)
    _state(c, rep)
    _durability(c, rep)
    _processes(c, rep)
    return rep


def _by_cue(c: Collected) -> dict[str, list[tuple[str, dict[str, str]]]]:
    out: dict[str, list[tuple[str, dict[str, str]]]] = defaultdict(list)
    for eid, h in c.execs.items():
        out[h.get("cue", "")].append((eid, h))
    return out


def _slots(c: Collected, rep: Report, keys: Keys) -> None:
    by_cue = _by_cue(c)
    for cue in c.cues.values():
        scheduled = [
            (int(h["sf"]), eid)
            for eid, h in by_cue.get(cue.id, [])
            if (h.get("tb") or "scheduled") == "scheduled"
        ]
        p = keys.cue_byte(cue.id)  # the id's last byte (``Keys.cue_byte``)
        for sf, eid in scheduled:
            if eid != scheduled_execution_id(cue.id, sf, p):
                rep.bad("scheduled execution id not deterministic", f"{cue.id} slot {sf}: {eid}")
        per_slot = Counter(sf for sf, _ in scheduled)
        for sf, n in per_slot.items():
            if n > 1:
                rep.bad("slot with more than one execution", f"{cue.id} slot {sf}: {n}")
        if cue.one_time:
            if len(scheduled) != 1 or scheduled[0][0] != cue.first_nr:
                rep.bad(
                    "one-time cue did not fire exactly once", f"{cue.id} ({cue.kind}): {sorted(per_slot)}"
                )
                continue
            st = c.execs[scheduled[0][1]].get("st")
            status = c.redis_cues.get(cue.id, {}).get("status")
            want = {"success": "completed"}.get(st or "", "failed" if st in TERMINAL else None)
            if want is not None and status != want:
                rep.bad(
                    "one-time cue not completed",
                    f"{cue.id} ({cue.kind}): execution {st}, cue {status} (want {want})",
                )
            continue
        slots = sorted(per_slot)
        final = c.final_nr.get(cue.id)
        if not slots:
            rep.bad("missed slot", f"{cue.id}: no execution at all (first {cue.first_nr})")
            continue
        if slots[0] != cue.first_nr:
            rep.bad("missed slot", f"{cue.id}: first slot {slots[0]}, expected {cue.first_nr}")
        gaps = [(a, b) for a, b in itertools.pairwise(slots) if b - a != SECOND]
        for a, b in gaps:
            rep.bad("missed slot", f"{cue.id}: {(b - a) // SECOND - 1} slots missing after {a}")
        if final is not None and slots[-1] < final - SECOND:
            rep.bad("missed slot", f"{cue.id}: last slot {slots[-1]} but next_run was {final}")
        rep.counts["slots checked"] += len(slots)


def _fires(c: Collected, rep: Report) -> None:
    fired = set()
    for key, (cue_id, eid) in c.fires.items():
        if eid is None:
            rep.bad("manual fire never answered", key)
            continue
        fired.add(eid)
        h = c.execs.get(eid)
        if h is None or h.get("cue") != cue_id or h.get("tb") != "manual_fire":
            rep.bad("manual fire without its execution", f"{key}: {eid} → {h and h.get('tb')}")
    for item in c.fire_mismatch:
        rep.bad("idempotent fire answered differently", item)
    for eid, h in c.execs.items():
        if h.get("tb") == "manual_fire" and eid not in fired:
            rep.bad("manual execution no fire created", f"{eid} of {h.get('cue')}")


def _delivery(c: Collected, rep: Report) -> None:
    got: dict[str, list[Any]] = defaultdict(list)
    for d in c.deliveries:
        got[d.eid].append(d)
        if not d.sig_ok:
            rep.bad("bad signature", f"{d.eid} attempt {d.attempt}")
        if d.attempt != d.body_attempt:
            rep.bad("attempt header differs from body", f"{d.eid}: {d.attempt} vs {d.body_attempt}")
        if d.eid not in c.execs:
            rep.bad("delivery of an unknown execution", d.eid)
    for item in c.unparsed_requests:
        rep.bad("unparseable webhook request", item)
    ran = {line["eid"] for line in c.handler_log}
    for line in c.handler_log:
        if line["eid"] not in c.execs:
            rep.bad("handler ran an unknown execution", line["eid"])
    for eid, h in c.execs.items():
        cue = c.cues.get(h.get("cue", ""))
        st, att, em = h.get("st", ""), int(h.get("att") or 0), h.get("em", "")
        what = (
            f"{eid} ({cue.kind if cue else '?'}, {h.get('tb') or 'scheduled'}): {st}, {att} attempts, {em!r}"
        )
        if st not in TERMINAL:
            window = c.non_terminal_windows.get(eid, "")
            if window:
                rep.counts[f"in window: {window}"] += 1
            else:
                rep.bad("execution not terminal", what)
            continue
        if h.get("tr") == "worker":
            if eid in ran:
                continue
            if st == "missed" or (st == "failed" and "lease expired" in em):
                rep.counts["failed by policy, never run by the handler"] += 1
            else:
                rep.bad("due but never claimed", what)
            continue
        seen = got.get(eid, [])
        if seen:
            top = max(d.attempt for d in seen)
            if top > att:
                rep.bad("attempt sent beyond the attempts counted", f"{what}; attempt {top} received")
        elif st == "failed" and em in POLICY_ERRORS:
            rep.counts["failed by policy, never received"] += 1
        else:
            rep.bad("due but never delivered", what)
    _duplicates(c, rep, got)


def _duplicates(c: Collected, rep: Report, got: dict[str, list[Any]]) -> None:
    """The same (execution, attempt) received twice: allowed (at least once) after a crash, a
    cut-off on SIGTERM or a Redis restart; a second copy sent while the first was still open is a
    stale takeover of an attempt whose sender was still waiting."""
    for eid, ds in got.items():
        by_attempt: dict[int, list[Any]] = defaultdict(list)
        for d in ds:
            by_attempt[d.attempt].append(d)
        for attempt, copies in by_attempt.items():
            if len(copies) < 2:
                continue
            rep.counts["duplicate deliveries (same execution and attempt)"] += len(copies) - 1
            copies.sort(key=lambda d: d.arrived)
            for first, later in itertools.pairwise(copies):
                if first.ended is None or first.ended > later.arrived:
                    rep.bad(
                        "concurrent duplicate delivery",
                        f"{eid} attempt {attempt}: sent again {later.arrived - first.arrived:.1f}s after "
                        f"the first copy, which was still open (held: {first.held})",
                    )


def _outcome_expected(c: Collected, eid: str, h: dict[str, str]) -> tuple[str, dict[str, Any] | None]:
    """(who reports it, what it reports) — ``None``: nobody reports one for this execution."""
    cue = c.cues.get(h.get("cue", ""))
    if cue is None:
        return "?", None
    if cue.kind == "worker":
        out = outcome_for(eid)
        return "worker", {
            "success": out.get("success", True),
            "result": out.get("result"),
            "error": out.get("error"),
        }
    if cue.kind == "outcome":
        source = outcome_source(eid)
        ok = outcome_success(eid)
        if source == "body":
            return "body", {
                "success": ok,
                "result": f"b-{eid[:8]}" if ok else None,
                "error": None if ok else f"b-{eid[:8]}",
            }
        if source == "post":
            body = c.posted.get(eid)
            if body is None:
                return "post", None
            return "post", {
                "success": body["success"],
                "result": body.get("result"),
                "error": body.get("error"),
            }
    return "none", None


def _outcomes(c: Collected, rep: Report) -> None:
    for item in c.observed_changes:
        rep.bad("outcome changed after it was recorded", item)
    for item in c.post_conflicts:
        rep.bad("outcome already recorded on our first report", item)
    for eid, h in c.execs.items():
        source, want = _outcome_expected(c, eid, h)
        raw = h.get("oc")
        stored = render_outcome(json.loads(raw)) if raw else None  # stored without its nulls
        if stored is not None:
            rep.counts["outcomes checked"] += 1
            seen = c.observed.get(eid)
            if seen is not None and json.dumps(stored, sort_keys=True) != seen:
                rep.bad("outcome changed after it was recorded", f"{eid}: first seen {seen}, stored {raw}")
        if want is None:
            if stored is not None:
                rep.bad("outcome nobody reported", f"{eid} ({source}): {raw}")
            continue
        if stored is None:
            if source == "post" or (
                source == "worker"
                and h.get("st") in ("success", "failed")
                and "lease expired" not in h.get("em", "")
            ):
                rep.bad("outcome lost", f"{eid} ({source}, {h.get('st')}): expected {want}")
            elif source == "body" and h.get("da") and _body_answered(c, eid):
                rep.bad("response-body outcome lost", f"{eid} ({h.get('st')}): answered {want}")
            continue
        got = {k: stored.get(k) for k in ("success", "result", "error")}
        if got != want:
            rep.bad(
                "outcome differs from the one reported", f"{eid} ({source}): reported {want}, stored {got}"
            )


def _body_answered(c: Collected, eid: str) -> bool:
    """A receiver answered a 2xx with a response-body outcome to a sender that was still there
    (the caller also requires ``delivered_at``: an answer written just as the sender timed out
    never reached it)."""
    return any(d.eid == eid and d.answer and "success" in d.answer and not d.gone for d in c.deliveries)


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [str(e["id"]) for e in items]


def _dups(ids: list[str]) -> list[str]:
    return [i for i, n in Counter(ids).items() if n > 1]


def _listings(c: Collected, rep: Report) -> None:
    trimmed = {eid for eid, row in c.pg_execs.items() if not row[1]}
    for account, dup in c.page_duplicates:
        if set(dup) <= trimmed:  # listed from Redis and from the history while a trim ran
            rep.counts[f"in window: {TRIM_WINDOW}"] += len(dup)
        else:
            rep.bad("duplicate in a listing", f"{account} newest page, during the run: {dup[:5]}")
    lst = c.listings
    trimmed_by_acct: dict[str, set[str]] = defaultdict(set)  # in PostgreSQL's history only
    trimmed_by_cue: dict[str, set[str]] = defaultdict(set)
    for eid, h in c.execs.items():
        if eid not in c.redis_execs:
            trimmed_by_acct[h.get("acct", "")].add(eid)
            trimmed_by_cue[h.get("cue", "")].add(eid)
    for name, (items, total) in lst["executions"].items():
        ids = _ids(items)
        rep.counts["listing rows read"] += len(ids)
        if _dups(ids):
            rep.bad("duplicate in a listing", f"{name} executions: {_dups(ids)[:5]}")
        if len(ids) != total:
            rep.bad("listing total differs from its rows", f"{name}: {len(ids)} rows, total {total}")
        redis_ids = set(c.redis_acct_execs.get(name, [])) | trimmed_by_acct.get(c.accounts[name].id, set())
        if set(ids) != redis_ids:
            rep.bad(
                "listing differs from Redis",
                f"{name}: {len(set(ids) - redis_ids)} only listed, {len(redis_ids - set(ids))} only in Redis",
            )
        union: set[str] = set()
        complete, totals = True, 0
        status_of = {str(e["id"]): e["status"] for e in items}
        for (acct, st), (rows, st_total) in lst["by_status"].items():
            if acct != name:
                continue
            sids = _ids(rows)
            if _dups(sids):
                rep.bad("duplicate in a listing", f"{name} status={st}: {_dups(sids)[:5]}")
            wrong = [i for i in sids if status_of.get(i) != st]
            if wrong:
                rep.bad("status filter differs from the full listing", f"{name} {st}: {wrong[:5]}")
            union |= set(sids)
            totals += st_total
            complete = complete and len(sids) == st_total
        if totals != total or (complete and union != set(ids)):
            rep.bad("status listings do not add up", f"{name}: totals {totals} vs {total}")
        cue_ids = _ids(lst["cues"][name])
        if _dups(cue_ids):
            rep.bad("duplicate in a listing", f"{name} cues: {_dups(cue_ids)}")
        ours = {cid for cid, cue in c.cues.items() if cue.account == name}
        if not ours <= set(cue_ids):
            rep.bad("cue missing from the listing", f"{name}: {sorted(ours - set(cue_ids))[:5]}")
        if lst["claimable"].get(name):
            rep.bad("claimable after the drain", f"{name}: {_ids_claimable(lst['claimable'][name])}")
    for cue_id, rows in lst["cue_execs"].items():
        redis_ids = set(c.redis_cue_execs.get(cue_id, [])) | trimmed_by_cue.get(cue_id, set())
        for label, items in (("cue_id filter", rows), ("cue detail page", lst["cue_pages"][cue_id])):
            ids = _ids(items)
            if _dups(ids):
                rep.bad("duplicate in a listing", f"{cue_id} {label}: {_dups(ids)[:5]}")
            if set(ids) != redis_ids:
                rep.bad("listing differs from Redis", f"{cue_id} {label}: {len(set(ids) ^ redis_ids)} differ")


def _ids_claimable(items: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("execution_id")) for e in items][:5]


def _state(c: Collected, rep: Report) -> None:
    in_acct = {eid for ids in c.redis_acct_execs.values() for eid in ids}
    in_cues = {eid for ids in c.redis_cue_execs.values() for eid in ids}
    for eid in in_acct | in_cues:
        if eid not in c.redis_execs:
            rep.bad("index entry without its execution", eid)
    for eid in c.redis_execs:
        if eid not in in_acct or eid not in in_cues:
            rep.bad(
                "execution missing from an index", f"{eid}: account {eid in in_acct}, cue {eid in in_cues}"
            )
    for queue, members in c.redis_queues.items():
        for eid in members:
            h = c.redis_execs.get(eid)
            if h is None:
                rep.bad("queue entry without its execution", f"{queue}: {eid}")
            elif h.get("st") in TERMINAL:
                rep.bad("finished execution still queued", f"{queue}: {eid} ({h.get('st')})")


def _durability(c: Collected, rep: Report) -> None:
    for slot, n in c.redis_dirty.items():
        if n:
            rep.bad("dirty marks left after the final snapshot", f"{slot}: {n}")
    for eid, stored in c.redis_execs.items():
        # the snapshot doc carries the id; a hash since layout 2 does not (its key has it)
        h = {"id": eid, **stored} if stored.get("acct") else stored
        row = c.pg_execs.get(eid)
        if row is None:
            rep.bad("execution missing from PostgreSQL", eid)
            continue
        status, in_redis, doc = row
        if json.loads(doc) != h or status != h.get("st"):
            rep.bad("PostgreSQL differs from Redis", f"execution {eid}: {_diff(json.loads(doc), h)}")
    trimmed = 0
    for eid, (status, in_redis, _) in c.pg_execs.items():
        if in_redis and eid not in c.redis_execs:
            rep.bad("PostgreSQL holds an execution Redis does not", eid)
        elif not in_redis:
            trimmed += 1
            if eid in c.redis_execs:
                rep.bad("trimmed execution still in Redis", f"{eid} ({status})")
            elif status not in TERMINAL:
                rep.bad("trimmed execution not finished", f"{eid} ({status})")
    rep.counts["executions trimmed to PostgreSQL history"] = trimmed
    rep.counts["PostgreSQL rows compared"] = len(c.pg_execs)
    for cue_id, h in c.redis_cues.items():
        cue_row = c.pg_cues.get(cue_id)
        if cue_row is None:
            rep.bad("cue missing from PostgreSQL", cue_id)
        elif json.loads(cue_row[2]) != h:
            rep.bad("PostgreSQL differs from Redis", f"cue {cue_id}: {_diff(json.loads(cue_row[2]), h)}")
    for acct_id, h in c.redis_accounts.items():
        doc = c.pg_accounts.get(acct_id)
        if doc is None:
            rep.bad("account missing from PostgreSQL", acct_id)
        elif json.loads(doc) != h:
            rep.bad("PostgreSQL differs from Redis", f"account {acct_id}: {_diff(json.loads(doc), h)}")


def _diff(pg: dict[str, Any], redis: dict[str, str]) -> str:
    """The fields that differ: ``field pg→redis`` (secrets left out)."""
    parts = []
    for k in sorted(set(pg) | set(redis)):
        if pg.get(k) != redis.get(k):
            hidden = any(w in k for w in ("secret", "key", "sha", "enc"))
            parts.append(f"{k} {'…' if hidden else pg.get(k)}→{'…' if hidden else redis.get(k)}")
    return ", ".join(parts)


def _processes(c: Collected, rep: Report) -> None:
    for item in c.http_500s:
        rep.bad("API answered 500", item)
    for item in c.unexpected_exits:
        if "on SIGTERM" in item or "did not stop" in item:
            rep.bad("unclean exit on SIGTERM", item)
        else:
            rep.note("process exited by itself (restarted)", item)
    for name, code in c.stop_codes.items():
        if code != 0:
            rep.bad("unclean exit on SIGTERM", f"{name} (final stop) exited {code}")
    code, line = c.snapshot_cli
    if code != 0:
        rep.bad("cuefast snapshot failed", f"exit {code}: {line}")
    for role, n in sorted(c.tracebacks.items()):
        if n:
            rep.note("tracebacks logged", f"{role}: {n}")
    for label, n in sorted(c.log_findings.items()):
        rep.note("log lines", f"{label}: {n}")
    if not c.drained:
        rep.note("drain", "timed out; executions left are listed under 'execution not terminal' or a window")
    for f in c.faults:
        if f.note:
            rep.note("faults", f"cycle {f.fault.cycle + 1}: {f.fault.describe()} — {f.note}")
    for k, v in c.timings.items():
        rep.counts[f"seconds: {k}"] = int(v)
