"""Verification checks (cuefast): a successful outcome's evidence checked by the dispatcher."""

from __future__ import annotations

import functools
import logging
from typing import Any

import jsonschema_rs
import msgspec

from cuefast.engine.webhooks import Webhooks
from cuefast.models import CONFIG_DECODER, VerificationChecks
from cuefast.services.cue_input import id_pattern
from cuefast.services.outcomes import OutcomeService
from cuefast.store import Store

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 10.0
MAX_EXTERNAL_ID = 500


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    return jsonschema_rs.validator_for(msgspec.json.decode(schema_json))


def local_problem(outcome: dict[str, Any], checks: VerificationChecks) -> str:
    """Why the outcome fails ``external_id_pattern`` or ``result_schema`` ("" = it passes).
    ``result`` is checked as JSON when it parses as JSON, else as the string it is."""
    if checks.external_id_pattern is not None:
        ext = outcome.get("external_id")
        if not isinstance(ext, str) or not ext:
            return "external_id is missing"
        try:
            matches = id_pattern(checks.external_id_pattern).is_valid(ext[:MAX_EXTERNAL_ID])
        except ValueError:  # stored before patterns were read by this engine
            matches = False
        if not matches:
            return "external_id does not match external_id_pattern"
    if checks.result_schema is not None:
        result = outcome.get("result")
        try:
            value = msgspec.json.decode(result) if isinstance(result, str) else result
        except msgspec.DecodeError:
            value = result
        validator = _validator(msgspec.json.encode(checks.result_schema).decode())
        errors = [str(e.message) for e in validator.iter_errors(value)]
        if errors:
            return f"result does not satisfy result_schema: {errors[0][:200]}"
    return ""


class Checker:
    """Runs one execution's checks (notice ``v``): True when settled, False to try again later
    (the result URL could not be reached for a reason that may pass)."""

    def __init__(self, store: Store, webhooks: Webhooks, outcomes: OutcomeService) -> None:
        self.store = store
        self.webhooks = webhooks
        self.outcomes = outcomes

    async def run(self, execution_id: str, last_attempt: bool) -> bool:
        h = await self.store.executions.get(execution_id)
        if h is None or h.get("os") != "verification_pending" or not h.get("oc"):
            return True
        cue = await self.store.cues.get(h.get("cue", ""))
        cfg = CONFIG_DECODER.decode(cue["cfg"]) if cue and cue.get("cfg") else None
        checks = cfg.verification.checks if cfg and cfg.verification else None
        if checks is None:  # the checks were removed meanwhile: nothing left to check
            await self.outcomes.settle_checks(execution_id, "")
            return True
        outcome: dict[str, Any] = msgspec.json.decode(h["oc"])
        problem = local_problem(outcome, checks)
        if not problem and checks.result_url_reachable:
            url = outcome.get("result_url")
            if not isinstance(url, str) or not url:
                problem = "result_url is missing"
            else:
                sent = await self.webhooks.send(url, "GET", b"", {}, CHECK_TIMEOUT_S)
                if not sent.ok:
                    transient = sent.status is None or sent.status >= 500 or sent.status == 429
                    if transient and not last_attempt:
                        return False
                    problem = f"result_url answered {sent.status or sent.error}"[:300]
        await self.outcomes.settle_checks(execution_id, problem)
        return True
