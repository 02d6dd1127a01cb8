"""The contract machinery itself: the checker catches what it must, the SDK decodes each route
into the Struct the schema declares, and one pass over every operation conforms."""

from __future__ import annotations

import msgspec
import pytest

from cuefast.client import account_models, models
from cuefast.client.resources import Alerts, Cues, Executions, WorkerBatch, Workers
from tests.contract.checker import Contract, check_body
from tests.contract.hook import contract

_CUE = {
    "id": "cue_pbafy2oo0jo9",
    "name": "n",
    "status": "active",
    "schedule": {"type": "recurring", "timezone": "UTC", "cron": "* * * * *"},
    "callback": {"url": None, "method": "POST", "headers": {}},
    "created_at": "2026-11-23T11:41:18Z",
    "updated_at": "2026-11-23T11:41:18Z",
}


def test_unknown_fields_are_found_at_any_depth() -> None:
    ok = msgspec.json.encode(_CUE)
    assert check_body("Cue", ok) == []
    deep = msgspec.json.encode({**_CUE, "callback": {**_CUE["callback"], "secret": "x"}})
    assert check_body("Cue", deep) == ["Cue has no field $.callback.secret"]
    listed = msgspec.json.encode({"cues": [{**_CUE, "extra": 1}], "total": 1, "limit": 1, "offset": 0})
    assert check_body("CueList", listed) == ["CueList has no field $.cues[0].extra"]
    assert check_body("Cue", msgspec.json.encode({**_CUE, "run_count": "3"}))[0].startswith("does not decode")
    assert check_body("Nope", b"{}") == ["schema names 'Nope', which is not a Struct of cuefast.client"]


def test_statuses_paths_and_envelopes() -> None:
    c: Contract = contract()
    assert c.find("GET", "/v1/executions/claimable") is not None
    assert c.find("GET", "/v1/executions/claimable").template == "/v1/executions/claimable"  # type: ignore[union-attr]
    assert c.find("POST", "/v1/cues/bulk-delete").template == "/v1/cues/bulk-delete"  # type: ignore[union-attr]
    assert c.find("GET", "/v1/cues/cue_x/").template == "/v1/cues/{cue_id}"  # type: ignore[union-attr]
    err = msgspec.json.encode({"error": {"code": "x", "message": "m", "status": 418}})
    assert c.check("GET", "/v1/cues", 418, "application/json", err)[0].startswith(
        "status 418 is not documented"
    )
    assert c.check("GET", "/nowhere", 404, "application/json", err) == []
    assert c.check("GET", "/nowhere", 404, "application/json", b'{"detail": "x"}') != []
    assert c.check("DELETE", "/v1/workers/w", 204, "", b"x") == ["204 must have an empty body"]


def _sdk_calls() -> list[object]:
    def send(call: object) -> object:
        return call

    cues, execs, workers = Cues(send), Executions(send), Workers(send)
    alerts, batch = Alerts(send), WorkerBatch(send, 30.0)
    eid = "f2653324-1c5e-4d0b-9a77-6f3e0c1d2b88"
    return [
        cues.create("n", cron="* * * * *", callback="https://x.example"),
        cues.list(),
        cues.get("cue_pbafy2oo0jo9"),
        cues.update("cue_pbafy2oo0jo9", name="m"),
        cues.delete("cue_pbafy2oo0jo9"),
        cues.fire("cue_pbafy2oo0jo9"),
        execs.list(),
        execs.get(eid),
        execs.list_claimable(),
        execs.claim(eid, "w"),
        execs.claim_next("w"),
        execs.heartbeat(eid),
        execs.report_outcome(eid, True),
        execs.append_evidence(eid, summary="s"),
        execs.verify(eid),
        execs.mark_verification_pending(eid),
        execs.replay(eid),
        workers.list(),
        workers.delete("w"),
        workers.heartbeat("w"),
        alerts.list(),
        batch.claim("w"),
        batch.report_outcomes("w", []),
        batch.extend_leases("w", []),
        batch.release("w", []),
    ]


@pytest.mark.parametrize("call", _sdk_calls(), ids=lambda c: f"{c.method} {c.path}")  # type: ignore[attr-defined]
def test_the_sdk_decodes_each_route_into_the_declared_struct(call: object) -> None:
    """The types the API declares are the ones the SDK decodes (one Struct per shape)."""
    op = contract().find(call.method, call.path)  # type: ignore[attr-defined]
    assert op is not None
    success = {s: n for s, n in op.responses.items() if s.startswith("2")}
    decode = call.decode  # type: ignore[attr-defined]
    if decode is None:
        assert success == {"204": None}
    else:
        assert list(success.values()) == [decode.__name__]
        assert (
            getattr(models, decode.__name__, None) is decode
            or getattr(account_models, decode.__name__) is decode
        )
