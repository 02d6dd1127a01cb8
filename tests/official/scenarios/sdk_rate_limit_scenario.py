"""The official ``cueapi-sdk`` maps 429 to ``RateLimitError`` with an integer ``retry_after``.

Run inside the SDK venv: ``python sdk_rate_limit_scenario.py <base_url>`` against a server
whose ``CUEFAST_DEFAULT_RATE_LIMIT_PER_MINUTE`` is small.
"""

from __future__ import annotations

import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import Scenario, main
from cueapi import CueAPI, RateLimitError

BASE = sys.argv[1]
sc = Scenario()


@sc.step
def rate_limit_maps_to_rate_limit_error() -> None:
    email = f"sdk-rl-{uuid.uuid4().hex[:8]}@example.com"
    key = httpx.post(f"{BASE}/v1/auth/register", json={"email": email}, timeout=10).json()["api_key"]
    with CueAPI(key, base_url=BASE) as client:
        limit = client._get("/v1/auth/me")["rate_limit_per_minute"]
        assert limit <= 1000, f"the test server should run with a small per-minute limit, got {limit}"

        def call() -> BaseException | None:
            try:
                client.cues.list(limit=1)
            except RateLimitError as exc:
                return exc
            return None

        with ThreadPoolExecutor(4) as pool:  # limit + 1 requests, a few at a time
            results = list(pool.map(lambda _: call(), range(limit + 1)))
    limited = [r for r in results if r is not None]
    assert limited, f"no RateLimitError after {limit + 1} requests"
    assert len(results) - len(limited) == limit - 1  # the /me call above was the first counted one
    for exc in limited:
        assert isinstance(exc, RateLimitError)
        assert exc.status_code == 429 and exc.code == "rate_limit_exceeded", exc.body
        assert isinstance(exc.retry_after, int) and 1 <= exc.retry_after <= 60, exc.retry_after


if __name__ == "__main__":
    main(sc)
