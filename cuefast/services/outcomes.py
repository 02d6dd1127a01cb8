"""Outcomes, evidence and verification (CONTRACT.md §8.5–§8.9), without HTTP.

An outcome is written once, atomically with its status effect (``outcomes_record.lua``); a
second report is a 409 and the first stays. Evidence, ``/verify`` and
``/verification-pending`` change an existing outcome through a compare-and-set on the
outcome and its state, retried on contention.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from cuefast.clock import Clock
from cuefast.errors import Conflict, CuefastError, ExecutionNotFound, api_error
from cuefast.metrics import OUTCOMES, Metrics
from cuefast.models import CONFIG_DECODER, Account
from cuefast.services.claim_caps import ClaimCaps
from cuefast.services.cue_input import VERIFICATION_MODES
from cuefast.services.validate import MISSING, Checker, has_bad_text, has_surrogate, require_object
from cuefast.store import Status, Store
from cuefast.store.delivery import BodyOutcome
from cuefast.store.outcomes import Outcome
from cuefast.times import fmt_z

MAX_TEXT = 16_384
MAX_METADATA = 32_768
EVIDENCE = ("external_id", "result_url", "result_ref", "result_type", "summary", "artifacts")
OUTCOME_KEYS = ("success", "result", "error", "metadata", "recorded_at", *EVIDENCE)
"""the Outcome object's members (CONTRACT.md §8.1), in its order"""
_LIMITS = {"external_id": 500, "result_ref": 500, "result_type": 100, "summary": 500}
VERIFIABLE = frozenset({"reported_success", "reported_failure", "verification_pending"})
JSON_BAD_TEXT = "Value should not contain NUL characters or unpaired surrogates"


def outcome_json(outcome: dict[str, Any]) -> str:
    """The stored outcome JSON: its null members left out (``render_outcome`` puts them back) —
    most evidence is absent, and the nulls were ~100 bytes of every execution hash with one."""
    return msgspec.json.encode({k: v for k, v in outcome.items() if v is not None}).decode()


def render_outcome(outcome: Any) -> Any:
    """A stored outcome (decoded) as the contract's object: every member, null where absent."""
    if not isinstance(outcome, dict):
        return outcome
    return {**dict.fromkeys(OUTCOME_KEYS), **outcome}


class ParsedOutcome(NamedTuple):
    """An outcome report, checked and truncated (``parse_outcome``)."""

    success: bool
    result: str | None
    error: str | None
    metadata: Any
    evidence: dict[str, Any]

    def document(self, now: int) -> str:
        """The stored outcome JSON, recorded at ``now``."""
        return outcome_json(
            {
                "success": self.success,
                "result": self.result,
                "error": self.error,
                "metadata": self.metadata,
                "recorded_at": fmt_z(now),
                **{name: self.evidence.get(name) for name in EVIDENCE},
            }
        )


class OutcomeAlreadyRecorded(Conflict):
    def __init__(self) -> None:
        super().__init__("outcome_already_recorded", "Outcome has already been recorded for this execution")


class MetadataTooLarge(CuefastError):
    status = 400
    code = "metadata_too_large"

    def __init__(self) -> None:
        super().__init__("Outcome metadata must be under 32KB")


def _evidence(c: Checker, obj: dict[str, Any], loc: str = "body") -> dict[str, Any]:
    """The evidence keys present and valid (empty strings and lists count as absent)."""
    out: dict[str, Any] = {}
    for name in EVIDENCE:
        value = obj.get(name)
        if value is None:
            continue
        if name == "artifacts":
            if not isinstance(value, list):
                c.add(f"{loc}.artifacts", "Input should be a valid list")
            elif has_bad_text(value):
                c.add(f"{loc}.artifacts", JSON_BAD_TEXT)
            elif value:
                out[name] = value
            continue
        if name == "result_url":
            if value == "":
                continue
            checked = c.http_url(f"{loc}.result_url", value)
        else:
            checked = c.string(f"{loc}.{name}", value, max_len=_LIMITS[name])
        if checked is not MISSING and checked != "":
            out[name] = checked
    return out


def _metadata(c: Checker, obj: dict[str, Any], loc: str = "body") -> Any:
    value = obj.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict):
        c.add(f"{loc}.metadata", "Input should be a valid dictionary")
        return None
    if has_bad_text(value):
        c.add(f"{loc}.metadata", JSON_BAD_TEXT)
        return None
    if len(msgspec.json.encode(value)) > MAX_METADATA:
        raise MetadataTooLarge()
    return value


def parse_outcome(body: Any, loc: str = "body") -> ParsedOutcome:
    """Check an outcome report (§8.5): 422 on schema problems, 400 ``metadata_too_large``."""
    obj = require_object(body)
    c = Checker()
    success = MISSING
    if obj.get("success") is None:
        c.add(f"{loc}.success", "Field required")
    else:
        success = c.boolean(f"{loc}.success", obj["success"])
    texts: dict[str, str | None] = {}
    for name in ("result", "error"):
        value = obj.get(name)
        if value is None:
            texts[name] = None
        elif not isinstance(value, str):
            c.add(f"{loc}.{name}", "Input should be a valid string")
        elif has_surrogate(value):  # cannot be stored as UTF-8 (NUL is fine: free text)
            c.add(f"{loc}.{name}", "String should not contain unpaired surrogates")
        else:
            texts[name] = value[:MAX_TEXT]
    evidence = _evidence(c, obj, loc)
    c.raise_if_any()
    metadata = _metadata(c, obj, loc)
    c.raise_if_any()
    return ParsedOutcome(bool(success), texts["result"], texts["error"], metadata, evidence)


def outcome_state(success: bool, mode: str | None, evidence: dict[str, Any], checks: bool = False) -> str:
    """§8.6; with cuefast's ``verification.checks`` a success that passed the mode waits for
    them (``verification_pending``) — the rule ``lib/record_outcome.lua`` applies too."""
    state = _mode_state(success, mode, evidence)
    if checks and state in ("reported_success", "verified_success"):
        return "verification_pending"
    return state


def _mode_state(success: bool, mode: str | None, evidence: dict[str, Any]) -> str:
    if not success:
        return "reported_failure"
    if mode in (None, "none"):
        return "reported_success"
    if mode == "manual":
        return "verification_pending"
    needed = {
        "require_external_id": "external_id",
        "require_result_url": "result_url",
        "require_artifacts": "artifacts",
    }
    return "verified_success" if needed.get(mode, "") in evidence else "verification_failed"


class OutcomeService:
    def __init__(self, store: Store, clock: Clock, metrics: Metrics | None = None) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.caps = ClaimCaps(store, clock)

    async def _owned(self, account_id: str, execution_id: str) -> dict[str, str]:
        h = await self.store.executions.get(execution_id)
        if h is None or h.get("acct") != account_id:
            raise ExecutionNotFound()
        return h

    async def report(self, account: Account, execution_id: str, body: Any) -> dict[str, Any]:
        """One script call: the ownership check, the cue's verification mode (which picks the
        outcome_state), the write and the monthly counters (the partition's usage hash)."""
        parsed = parse_outcome(body)
        now = self.clock.now_us()
        ev = parsed.evidence
        states = (
            {mode: outcome_state(True, mode, ev) for mode in VERIFICATION_MODES} if parsed.success else {}
        )
        res = await self.store.outcomes.report(
            Outcome(
                execution_id,
                parsed.document(now),
                parsed.success,
                outcome_state(parsed.success, "", ev),  # a mode this server does not know
                (parsed.error or "")[:500],
            ),
            now,
            account_id=account.id,
            states=states,
        )
        if res.status is Status.EXISTS:
            raise OutcomeAlreadyRecorded()
        if res.status is not Status.OK:
            raise ExecutionNotFound()
        self.metrics.inc(OUTCOMES, ("true" if parsed.success else "false",))
        await self.caps.give(account, [execution_id])  # its task cap's permit, if any
        return {
            "execution_id": execution_id,
            "outcome_recorded": True,
            "outcome_state": res.state,
            "reason": None,
        }

    async def report_many(
        self, account: Account, items: list[tuple[str, ParsedOutcome | CuefastError]]
    ) -> list[tuple[str, CuefastError | None]]:
        """Record many checked outcomes in three round trips (executions, cue configs, one
        pipelined ``outcomes_record.lua`` call per partition); per item (outcome_state, None)
        or ("", error). Same rules as ``report`` item by item: one bad item does not fail the others."""
        ids = [eid for eid, parsed in items if not isinstance(parsed, CuefastError)]
        owned = await self.store.executions.cues(account.id, ids)
        cfgs = await self.store.cues.fields(list(dict.fromkeys(c.cue_id for c in owned.values())), ("cfg",))
        rows: list[Outcome] = []
        planned: dict[int, str] = {}
        now = self.clock.now_us()
        out: list[tuple[str, CuefastError | None]] = []
        for i, (eid, parsed) in enumerate(items):
            if isinstance(parsed, CuefastError):
                out.append(("", parsed))
                continue
            found = owned.get(eid)
            if found is None:
                out.append(("", ExecutionNotFound()))
                continue
            raw = cfgs.get(found.cue_id, {}).get("cfg")
            cfg = CONFIG_DECODER.decode(raw) if raw else None
            ver = cfg.verification if cfg else None
            state = outcome_state(
                parsed.success,
                ver.mode if ver else None,
                parsed.evidence,
                checks=ver is not None and ver.checks is not None,
            )
            rows.append(Outcome(eid, parsed.document(now), parsed.success, state, (parsed.error or "")[:500]))
            planned[i] = state
            out.append((state, None))
        results = await self.store.outcomes.record_many(account.id, rows, now)
        for (i, _), res, row in zip(planned.items(), results, rows, strict=True):
            if res.status is Status.EXISTS:
                out[i] = ("", OutcomeAlreadyRecorded())
            elif res.status is not Status.OK:
                out[i] = ("", ExecutionNotFound())
            else:  # counted in the usage counters by the script (lib/record_outcome.lua)
                self.metrics.inc(OUTCOMES, ("true" if row.success else "false",))
        await self.caps.give(
            account, [r.execution_id for r, res in zip(rows, results, strict=True) if res.status is Status.OK]
        )
        return out

    @staticmethod
    def from_response(body: bytes, mode: str | None, now_us: int) -> BodyOutcome | None:
        """§10.6: a 2xx body ``{"success": bool, …}`` as an outcome to record with the
        delivery's result (``delivery_finish.lua`` writes it in the same call, if the execution
        has none yet), or None when the body is not an outcome. Fields that do not pass their
        checks are left out."""
        try:
            obj = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("success"), bool):
            return None
        c = Checker()
        evidence = {
            k: v for k, v in _evidence(c, obj).items() if not any(loc == f"body.{k}" for loc, _ in c.problems)
        }
        try:
            metadata = _metadata(Checker(), obj)
        except MetadataTooLarge:
            metadata = None
        texts = {
            n: (obj[n][:MAX_TEXT] if isinstance(obj.get(n), str) and not has_surrogate(obj[n]) else None)
            for n in ("result", "error")
        }
        success: bool = obj["success"]
        outcome = {
            "success": success,
            "result": texts["result"],
            "error": texts["error"],
            "metadata": metadata,
            "recorded_at": fmt_z(now_us),
            **{name: evidence.get(name) for name in EVIDENCE},
        }
        state = outcome_state(success, mode, evidence)
        return BodyOutcome(outcome_json(outcome), success, state, (texts["error"] or "")[:500])

    async def _change(
        self, account_id: str, execution_id: str, change: Any, *, alert: bool = False
    ) -> dict[str, Any]:
        """Apply ``change(outcome dict, state) -> (fields, response)`` with compare-and-set; with
        ``alert``, a change to ``verification_failed`` raises that alert in the same step."""
        for _ in range(20):
            h = await self._owned(account_id, execution_id)
            fields, response = change(
                msgspec.json.decode(h["oc"]) if h.get("oc") else None, h.get("os") or None
            )
            res = await self.store.executions.cas(
                execution_id,
                h.get("oc") or "",
                h.get("os") or "",
                fields,
                alert_at_us=self.clock.now_us() if alert else None,
            )
            if res is Status.OK:
                return dict(response)
            if res is Status.NOT_FOUND:
                raise ExecutionNotFound()
        raise RuntimeError("execution kept changing")  # pragma: no cover

    async def append_evidence(self, account: Account, execution_id: str, body: Any) -> dict[str, Any]:
        obj = require_object(body)
        c = Checker()
        evidence = _evidence(c, obj)
        c.raise_if_any()
        metadata = _metadata(c, obj)
        c.raise_if_any()

        def change(
            outcome: dict[str, Any] | None, state: str | None
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            if outcome is None:
                raise Conflict("no_outcome", "Report outcome first before appending evidence")
            outcome.update(evidence)
            fields: dict[str, Any] = {"oc": outcome_json(outcome), "ua": self.clock.now_us()}
            if metadata:
                fields["evm"] = msgspec.json.encode(metadata).decode()
            return fields, {"execution_id": execution_id, "outcome_state": state, "evidence_updated": True}

        return await self._change(account.id, execution_id, change)

    async def verify(self, account: Account, execution_id: str, body: Any) -> dict[str, Any]:
        obj = require_object(body)
        c = Checker()
        valid = True if obj.get("valid") is None else c.boolean("body.valid", obj["valid"])
        reason = None if obj.get("reason") is None else c.string("body.reason", obj["reason"])
        c.raise_if_any()
        return await self._verify(account.id, execution_id, valid, reason)

    async def _verify(
        self, account_id: str, execution_id: str, valid: bool, reason: str | None, *, alert: bool = False
    ) -> dict[str, Any]:
        """``verify`` for an account id; with ``alert`` (the dispatcher's checks) a rejection
        raises the ``verification_failed`` alert too."""

        def change(
            outcome: dict[str, Any] | None, state: str | None
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            if outcome is None or state not in VERIFIABLE:
                raise api_error(409, "invalid_state", f"Cannot verify from state '{state}'")
            new_state = "verified_success" if valid else "verification_failed"
            fields: dict[str, Any] = {"os": new_state, "ua": self.clock.now_us()}
            if not valid and reason:
                suffix = f"verification rejected: {reason[:500]}"
                old = outcome.get("summary") or ""
                outcome["summary"] = (f"{old} | {suffix}" if old else suffix)[:500]
                fields["oc"] = outcome_json(outcome)
            return fields, {
                "execution_id": execution_id,
                "outcome_state": new_state,
                "valid": valid,
                "reason": reason,
            }

        return await self._change(account_id, execution_id, change, alert=alert)

    async def settle_checks(self, execution_id: str, problem: str) -> bool:
        """The dispatcher's verification checks are done: ``verified_success``, or with a
        ``problem`` ``verification_failed`` (the reason appended to the summary, and the
        ``verification_failed`` alert raised in the same compare-and-set). False when the execution is gone or
        no longer waits for them (verified by hand meanwhile)."""
        h = await self.store.executions.get(execution_id)
        if h is None or h.get("os") != "verification_pending":
            return False
        reason = f"check failed: {problem}" if problem else None
        try:
            await self._verify(h.get("acct", ""), execution_id, not problem, reason, alert=True)
        except CuefastError:
            return False
        return True

    async def mark_pending(self, account: Account, execution_id: str) -> dict[str, Any]:
        def change(
            outcome: dict[str, Any] | None, state: str | None
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            if outcome is None:
                raise Conflict("no_outcome", "No outcome recorded yet")
            return (
                {"os": "verification_pending", "ua": self.clock.now_us()},
                {"execution_id": execution_id, "outcome_state": "verification_pending"},
            )

        return await self._change(account.id, execution_id, change)
