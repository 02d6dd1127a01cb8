"""The cuefast SDK: ``CueFast`` (sync) and ``AsyncCueFast`` (async), one implementation.

Same surface as the CueAPI SDK (``client.cues``, ``client.executions``, ``client.workers``,
``client.alerts``, ``client.usage()``) plus cuefast's batch pull (``client.worker``).
Only httpx and msgspec are imported: the SDK never loads server modules.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Generic

import httpx

from cuefast.client._core import (
    AsyncMode,
    AsyncSender,
    Call,
    Core,
    Mode,
    Resource,
    SyncMode,
    SyncSender,
    call,
    op,
)
from cuefast.client.models import Usage
from cuefast.client.resources import Alerts, Cues, Executions, WorkerBatch, Workers

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0

__all__ = ["DEFAULT_BASE_URL", "AsyncCueFast", "CueFast"]


def _resolve(api_key: str | None, base_url: str | None) -> tuple[str, str]:
    key = api_key or os.environ.get("CUEFAST_API_KEY", "")
    url = base_url or os.environ.get("CUEFAST_BASE_URL", "") or DEFAULT_BASE_URL
    return key, url


class _Client(Resource[Mode], Generic[Mode]):
    cues: Cues[Mode]
    executions: Executions[Mode]
    workers: Workers[Mode]
    alerts: Alerts[Mode]
    worker: WorkerBatch[Mode]

    def _bind(self, core: Core, send: Any) -> None:
        self._core = core
        self.cues = Cues(send)
        self.executions = Executions(send)
        self.workers = Workers(send)
        self.alerts = Alerts(send)
        self.worker = WorkerBatch(send, core.timeout)

    @property
    def base_url(self) -> str:
        return self._core.base_url

    @op
    def usage(self) -> Call[Usage]:
        """Plan, quotas and this month's counters."""
        return call("GET", "/v1/usage", Usage)


class CueFast(_Client[SyncMode]):
    """Synchronous client.

    ``api_key`` defaults to ``CUEFAST_API_KEY``, ``base_url`` to ``CUEFAST_BASE_URL`` or
    ``http://127.0.0.1:8000`` (the server root; paths add ``/v1/…``). Pass ``http_client``
    to use your own ``httpx.Client`` (proxies, transports; its base URL is not used).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        retry_non_idempotent: bool = False,
        max_retry_wait: float = 60.0,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        core = Core(
            *_resolve(api_key, base_url),
            timeout=timeout,
            max_retries=max_retries,
            retry_non_idempotent=retry_non_idempotent,
            max_retry_wait=max_retry_wait,
            headers=headers,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            base_url=core.base_url, headers=core.headers, timeout=timeout
        )
        if not self._owns_http:
            self._http.base_url = httpx.URL(core.base_url)
            self._http.headers.update(core.headers)
        send = SyncSender(core, self._http)
        super().__init__(send)
        self._bind(core, send)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> CueFast:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


class AsyncCueFast(_Client[AsyncMode]):
    """Asynchronous client (same methods as ``CueFast``, awaited)."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        retry_non_idempotent: bool = False,
        max_retry_wait: float = 60.0,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_connections: int = 100,
    ) -> None:
        core = Core(
            *_resolve(api_key, base_url),
            timeout=timeout,
            max_retries=max_retries,
            retry_non_idempotent=retry_non_idempotent,
            max_retry_wait=max_retry_wait,
            headers=headers,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            base_url=core.base_url,
            headers=core.headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        if not self._owns_http:
            self._http.base_url = httpx.URL(core.base_url)
            self._http.headers.update(core.headers)
        send = AsyncSender(core, self._http)
        super().__init__(send)
        self._bind(core, send)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncCueFast:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.aclose()
