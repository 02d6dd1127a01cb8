"""Bulk replay (cuefast): POST /v1/executions/replay, GET /v1/replays/{id}."""

from __future__ import annotations

from litestar import Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from cuefast.api.deps import CurrentAccount
from cuefast.api.http import json_response, read_json
from cuefast.api.openapi import RawJSON, doc
from cuefast.client.bodies import BulkReplayRequest
from cuefast.client.models import ReplayJob
from cuefast.errors import ReplayNotFound, api_error
from cuefast.runtime import Runtime

JOB = {
    "id": "rpl_3f9a1c0d2e4b5a6978",
    "status": "running",
    "filter": {"cue_id": "cue_k3v9x2m4p7q1", "status": "failed", "since": "2026-12-04T09:00:00+00:00"},
    "limit": 5000,
    "rate_per_second": 100,
    "selected": 812,
    "replayed": 300,
    "skipped": 2,
    "last_error": None,
    "created_at": "2026-12-04T10:15:02.118204+00:00",
    "finished_at": None,
}


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    replays = rt.replays

    @post(
        "/v1/executions/replay",
        summary="Replay many executions (cuefast): by filter, at a bounded rate",
        tags=["executions"],
        **doc(
            status=201,
            body=BulkReplayRequest,
            errors=[
                api_error(400, "conflicting_filters", "Pass either `status` or `status__in`, not both."),
                api_error(
                    409,
                    "idempotency_key_conflict",
                    f"Idempotency key reused with a different request. Existing replay: {JOB['id']}",
                ),
            ],
            body_example={"filter": {"status": "failed", "since": "2026-12-04T09:00:00Z"}, "limit": 5000},
            example=JOB,
        ),
    )
    async def start_replay(account: CurrentAccount, data: RawJSON = b"") -> Response[ReplayJob]:
        return json_response(await replays.start(account, read_json(data)))

    @get(
        "/v1/replays/{replay_id:str}",
        summary="A bulk replay's progress (cuefast)",
        tags=["executions"],
        **doc(errors=[ReplayNotFound()], example={**JOB, "status": "done", "replayed": 810}),
    )
    async def get_replay(account: CurrentAccount, replay_id: FromPath[str]) -> Response[ReplayJob]:
        return json_response(await replays.get(account, replay_id))

    return [start_replay, get_replay]
