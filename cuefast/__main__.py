"""``cuefast …``: the command line.

``cuefast serve`` runs every server role in one process (API, scheduler, dispatcher,
snapshotter); ``cuefast snapshot`` writes one snapshot now, ``cuefast restore`` rebuilds
Redis from PostgreSQL. With ``CUEFAST_REDIS_URL`` /
``CUEFAST_DATABASE_URL`` unset it starts embedded Valkey / PostgreSQL under the data
dir and stops them on exit (normal exit, SIGINT/SIGTERM, or the parent dying).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cuefast import __version__, health, logs, tracing
from cuefast.config import Settings, load_settings
from cuefast.errors import ConfigError, OperatorError
from cuefast.heap import settle_heap

log = logging.getLogger("cuefast")


def setup_logging(settings: Settings) -> None:
    """The one logging setup (``cuefast.logs``) and, when asked for and installed, tracing."""
    logs.setup(settings.log_level, settings.effective_log_format)
    tracing.configure(otel=settings.otel)


def redact(url: str) -> str:
    """A URL without its password (for logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@contextlib.contextmanager
def backends(settings: Settings) -> Iterator[Settings]:
    """Settings whose empty backend URLs are filled by embedded servers (stopped on exit)."""
    want_redis = not settings.redis_url
    want_pg = not settings.database_url
    if not (want_redis or want_pg):
        log.info("backends: redis %s, postgres %s", redact(settings.redis_url), redact(settings.database_url))
        yield settings
        return
    from cuefast.embedded.servers import EmbeddedBackends

    with EmbeddedBackends(settings.data_dir, want_redis=want_redis, want_postgres=want_pg) as eb:
        filled = settings.replace(
            redis_url=eb.redis_url or settings.redis_url,
            database_url=eb.database_url or settings.database_url,
        )
        log.info(
            "backends: redis %s (%s), postgres %s (%s)",
            redact(filled.redis_url),
            "embedded" if want_redis else "external",
            redact(filled.database_url),
            "embedded" if want_pg else "external",
        )
        yield filled


async def _serve(
    settings: Settings,
    *,
    api: bool = True,
    scheduler: bool = True,
    dispatcher: bool = True,
    snapshotter: bool = True,
    sock: socket.socket | None = None,
) -> None:
    """Run the chosen roles in this process; the API on ``sock`` when given (``--workers``)."""
    import uvicorn

    from cuefast.api import create_app
    from cuefast.durability.snapshots import Snapshotter
    from cuefast.engine.dispatcher import Dispatcher
    from cuefast.engine.replays import ReplayRunner
    from cuefast.engine.scheduler import Scheduler
    from cuefast.runtime import Runtime

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # our handlers below; never re-raise
            yield

        async def main_loop(self) -> None:
            """uvicorn wakes every 0.1 s to notice ``should_exit`` and refresh the Date header
            once a second; here it wakes once a second, and at once on a stop (idle CPU)."""
            counter = 0
            while not await self.on_tick(counter):
                counter = (counter + 10) % 864000  # a multiple of 10: the header is refreshed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 1.0)

    rt = Runtime(
        settings,
        roles="+".join(
            r
            for r, on in (
                ("api", api),
                ("scheduler", scheduler),
                ("dispatcher", dispatcher),
                ("snapshotter", snapshotter and bool(settings.database_url)),
            )
            if on
        ),
        refuse_eviction=True,  # the server roles refuse a Redis that may evict keys
    )
    try:
        await rt.start()
    except ConfigError:
        await rt.close()
        raise
    config = uvicorn.Config(
        create_app(rt, manage_runtime=False),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = Server(config)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop() -> None:
        log.info("shutting down")
        server.should_exit = True
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    roles: list[asyncio.Task[None]] = []
    if scheduler:
        roles.append(
            asyncio.create_task(
                Scheduler(
                    rt.store,
                    rt.clock,
                    work=rt.reaper,
                    metrics=rt.metrics,
                    enforce_quotas=rt.settings.enforce_quotas,
                ).run(stopping),
                name="scheduler",
            )
        )
        log.info("scheduler running")
    if dispatcher:
        roles.append(
            asyncio.create_task(
                Dispatcher(rt.store, settings, rt.clock, rt.webhooks, metrics=rt.metrics).run(stopping),
                name="dispatcher",
            )
        )
        roles.append(asyncio.create_task(ReplayRunner(rt.replays).run(stopping), name="replays"))
        log.info("dispatcher running")
    if snapshotter and settings.database_url:
        snap = Snapshotter(rt.store, settings, rt.clock)
        roles.append(asyncio.create_task(snap.run(stopping, lambda: rt.pg_pool), name="snapshotter"))
        log.info("snapshotter running (one active per install; every %ss)", settings.snapshot_interval)
    settle_heap()
    try:
        if api:
            log.info("cuefast %s serving on http://%s:%d", __version__, settings.host, settings.port)
            await server.serve(sockets=[sock] if sock is not None else None)
            stopping.set()
        else:
            await stopping.wait()
    finally:
        stopping.set()
        await asyncio.gather(*roles, return_exceptions=True)
        await rt.close()


def _serve_forked(settings: Settings, *, background: bool) -> int:
    """``serve``/``api --workers N``: N processes on one socket (cuefast.prefork); with
    ``serve`` the first also runs the scheduler, dispatcher and snapshotter."""
    from cuefast import prefork

    _run(_preflight(settings))  # a Redis that cannot be used stops here, not in N crash loops
    sock = prefork.bind(settings.host, settings.port)
    log.info("cuefast %s serving on http://%s:%d", __version__, settings.host, settings.port)

    def child(index: int) -> int:
        roles = background and index == 0
        try:
            _run(_serve(settings, scheduler=roles, dispatcher=roles, snapshotter=roles, sock=sock))
        except OperatorError as exc:
            print(f"cuefast: {exc}", file=sys.stderr)
            return 2
        return 0

    return prefork.supervise(settings.api_workers, child)


async def _preflight(settings: Settings) -> None:
    """Redis answers with the configured URL, password and certificates (``OperatorError``)."""
    from cuefast.runtime import Runtime

    rt = Runtime(settings)
    try:
        await rt.reach_redis()
    finally:
        await rt.store.close()


async def _migrate(settings: Settings) -> None:
    from cuefast.durability import schema as pg

    pool = await pg.create_pool(settings.database_url, settings.database_schema)
    try:
        await pg.migrate(pool)
    finally:
        await pool.close()


SNAPSHOT_TIMEOUT_EXIT = 3


async def _snapshot_once(settings: Settings, wait_s: float) -> int:
    """``cuefast snapshot``: exit 0 once PostgreSQL holds everything that was changed when it
    was called. With no snapshotter running it takes the lease and writes the snapshot itself;
    while one runs (``cuefast serve`` / ``cuefast snapshotter``) it asks that one for a snapshot
    now and waits for it (taking over if that one stops meanwhile), for at most ``wait_s`` seconds."""
    from cuefast.durability.snapshots import Snapshotter
    from cuefast.runtime import Runtime

    rt = Runtime(settings)
    try:
        await rt.start(need_pg=True)
        if rt.pg_pool is None:
            print("cuefast: snapshot needs PostgreSQL (CUEFAST_DATABASE_URL)", file=sys.stderr)
            return 1
        snap = Snapshotter(rt.store, settings, rt.clock, rt.pg_pool)
        if not await snap.acquire():
            ticket, _ = await rt.store.snapshots.request("ask")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_s
            while not await snap.acquire():  # the running one stopped: write it here instead
                _, served = await rt.store.snapshots.request("read")
                if served >= ticket:
                    print(f"snapshot: written by the running snapshotter (request {ticket})")
                    return 0
                if loop.time() >= deadline:
                    print(
                        f"cuefast: the running snapshotter did not complete a snapshot within {wait_s:g} s "
                        "(see its log: is PostgreSQL reachable from it?); nothing is confirmed",
                        file=sys.stderr,
                    )
                    return SNAPSHOT_TIMEOUT_EXIT
                await asyncio.sleep(0.1)
        try:
            stats = await snap.snapshot()
        finally:
            await snap.release()
        print(f"snapshot: {stats.rows} rows upserted, {stats.deleted} removed, {stats.batches} batches")
        return 0
    finally:
        await rt.close()


async def _restore(settings: Settings, force: bool) -> int:
    from cuefast.durability.restore import NotEmpty, restore
    from cuefast.runtime import Runtime

    rt = Runtime(settings)
    try:
        await rt.reach_redis()
        await rt._connect_pg()
        try:
            stats = await restore(
                rt.store, rt.pg_pool, rt.clock.now_us(), force=force, explicit=bool(settings.partitions)
            )
        except NotEmpty:
            print(
                f"cuefast: Redis already holds data under prefix {settings.key_prefix!r}; "
                "restore writes only into an empty keyspace (--force to write over it)",
                file=sys.stderr,
            )
            return 1
        print(
            f"restored {stats.accounts} accounts, {stats.cues} cues, {stats.executions} executions, "
            f"{stats.alerts} alerts in {stats.seconds:.1f}s"
        )
        return 0
    finally:
        await rt.close()


async def _repartition(settings: Settings, to: int) -> int:
    from cuefast.clock import SystemClock
    from cuefast.store import connect
    from cuefast.store.connect import Tls, reach
    from cuefast.store.repartition import Refused, repartition

    tls = Tls(settings.redis_tls_ca, settings.redis_tls_cert, settings.redis_tls_key)
    redis = connect(settings.redis_url, cluster=settings.redis_cluster, tls=tls)
    try:
        await reach(redis, settings.redis_url, tls)
        stats = await repartition(redis, settings.key_prefix, to, SystemClock().now_us())
    except Refused as exc:
        print(f"cuefast: repartition refused: {exc}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    if stats.source == stats.target:
        print(f"repartition: the install already has {to} partitions; nothing to do")
        return 0
    print(
        f"repartitioned {stats.source} -> {stats.target} partitions: {stats.cues} cues, "
        f"{stats.executions} executions, {stats.alerts} alerts, {stats.idempotency} idempotency keys, "
        f"{stats.notices} notices ({stats.moved} objects changed partition) in {stats.seconds:.1f}s"
    )
    return 0


async def _maintenance(settings: Settings, args: argparse.Namespace) -> int:
    """The one-shot commands: snapshot, restore, repartition."""
    if args.command == "snapshot":
        return await _snapshot_once(settings, args.timeout)
    if args.command == "restore":
        return await _restore(settings, args.force)
    return await _repartition(settings, args.to)


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a server dependency
        return asyncio.run(coro)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cuefast", description="Redis-native scheduler for AI agents")
    parser.add_argument("--version", action="version", version=f"cuefast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run every server role in one process (API, scheduler, dispatcher, snapshotter)"),
        ("api", "run the HTTP API only"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--host", help="address to bind (CUEFAST_HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port to bind (CUEFAST_PORT, default 8000)")
        p.add_argument(
            "--workers",
            type=int,
            help="API processes serving the port (CUEFAST_API_WORKERS, default 1); with serve, "
            "the first also runs the scheduler, dispatcher and snapshotter",
        )
    sub.add_parser("scheduler", help="run the scheduler role only (any number may run)")
    sub.add_parser("dispatcher", help="run the webhook dispatcher role only (any number may run)")
    sub.add_parser("snapshotter", help="run the snapshotter role only (one active at a time; others idle)")
    p = sub.add_parser(
        "snapshot",
        help="make PostgreSQL hold everything changed so far, now (asks a running snapshotter, or "
        "writes the snapshot itself), then exit: 0 done, 1 no PostgreSQL, 3 timed out",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for a running snapshotter (default 300)",
    )
    p = sub.add_parser("restore", help="rebuild Redis from the PostgreSQL snapshot (into an empty keyspace)")
    p.add_argument("--force", action="store_true", help="write even when Redis already holds data")
    p = sub.add_parser(
        "repartition",
        help="move the install to another partition count (a power of two), with every cuefast "
        "process stopped; run it again to finish an interrupted run (README 'Scaling out')",
    )
    p.add_argument("--to", type=int, required=True, metavar="N", help="the new partition count (1-256)")
    sub.add_parser("migrate", help="apply the PostgreSQL schema (idempotent)")
    health.add_parser(sub)
    _add_worker_parser(sub)
    return parser


def _add_worker_parser(sub: Any) -> None:
    text = "run the worker daemon: pull worker-transport executions and run your handlers"
    p = sub.add_parser("worker", help=text, description=text)
    p.add_argument(
        "--app", help="module:attribute of a cuefast.Worker (or a factory returning one); CUEFAST_WORKER_APP"
    )
    p.add_argument("--api-key", help="API key (CUEFAST_API_KEY)")
    p.add_argument("--base-url", help="server root URL (CUEFAST_BASE_URL, default http://127.0.0.1:8000)")
    p.add_argument("--worker-id", help="worker id (CUEFAST_WORKER_ID, default <hostname>-<pid>)")
    p.add_argument("--concurrency", type=int, help="handlers running at once (CUEFAST_WORKER_CONCURRENCY, 8)")
    p.add_argument(
        "--prefetch", type=int, help="claimed executions waiting for a slot (CUEFAST_WORKER_PREFETCH, 0)"
    )
    p.add_argument("--agent", help="only executions whose payload.agent is this (CUEFAST_WORKER_AGENT)")
    p.add_argument("--lease-seconds", type=int, help="claim lease to ask for (default: the server's)")
    p.add_argument(
        "--wait-seconds", type=float, help="long-poll wait per claim, 0-30 (CUEFAST_WORKER_WAIT_SECONDS, 5)"
    )
    p.add_argument(
        "--grace-seconds",
        type=float,
        help="shutdown grace for running handlers (CUEFAST_WORKER_GRACE_SECONDS, 30)",
    )
    p.add_argument("--heartbeat-interval", type=float, help="worker registry heartbeat interval (30 s)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ... (CUEFAST_LOG_LEVEL, INFO)")
    p.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="auto (JSON unless stderr is a terminal), json or text (CUEFAST_LOG_FORMAT, auto)",
    )
    p.add_argument("--log-json", action="store_true", default=None, help="same as --log-format json")


def _worker(args: argparse.Namespace) -> int:
    """``cuefast worker``: the client side only (SDK + worker; no server modules)."""
    import os

    from cuefast.worker.app import load_app

    level = args.log_level or os.environ.get("CUEFAST_LOG_LEVEL") or "INFO"
    as_json = args.log_json or os.environ.get("CUEFAST_LOG_JSON", "").lower() in ("1", "true", "yes", "on")
    fmt = args.log_format or os.environ.get("CUEFAST_LOG_FORMAT") or ("json" if as_json else "auto")
    try:
        logs.setup(level, fmt)
    except ValueError as exc:
        print(f"cuefast: {exc}", file=sys.stderr)
        return 2
    spec = args.app or os.environ.get("CUEFAST_WORKER_APP")
    if not spec:
        print("cuefast: worker needs --app module:worker (or CUEFAST_WORKER_APP)", file=sys.stderr)
        return 2
    try:
        worker = load_app(spec)
        worker.configure(
            api_key=args.api_key,
            base_url=args.base_url,
            worker_id=args.worker_id,
            concurrency=args.concurrency,
            prefetch=args.prefetch,
            agent=args.agent,
            lease_seconds=args.lease_seconds,
            wait_seconds=args.wait_seconds,
            grace_seconds=args.grace_seconds,
            heartbeat_interval=args.heartbeat_interval,
        )
        worker._validate()
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        print(f"cuefast: worker configuration error: {exc}", file=sys.stderr)
        return 2
    return worker.run()


def _command(args: argparse.Namespace) -> int:
    """Run a server role or a one-shot command (raises ``ConfigError``/``OperatorError``)."""
    settings = load_settings(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        api_workers=getattr(args, "workers", None),
    )
    setup_logging(settings)
    with backends(settings) as filled:
        if args.command in ("serve", "api") and filled.api_workers > 1:
            return _serve_forked(filled, background=args.command == "serve")
        if args.command == "serve":
            _run(_serve(filled))
        elif args.command == "api":
            _run(_serve(filled, scheduler=False, dispatcher=False, snapshotter=False))
        elif args.command == "scheduler":
            _run(_serve(filled, api=False, dispatcher=False, snapshotter=False))
        elif args.command == "dispatcher":
            _run(_serve(filled, api=False, scheduler=False, snapshotter=False))
        elif args.command == "snapshotter":
            _run(_serve(filled, api=False, scheduler=False, dispatcher=False))
        elif args.command in ("snapshot", "restore", "repartition"):
            return int(_run(_maintenance(filled, args)))
        elif args.command == "migrate":
            _run(_migrate(filled))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        return _worker(args)
    if args.command == "health":
        return health.run(args)
    try:
        return _command(args)
    except OperatorError as exc:  # every "fix this setting" stop: one line, no traceback
        print(f"cuefast: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"cuefast: configuration error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "cuefast":
            raise
        print(
            f"cuefast: `cuefast {args.command}` needs the server dependencies ({exc.name} is missing): "
            "pip install 'cuefast[server]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
