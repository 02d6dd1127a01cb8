"""Redis refusing writes, for tests: a private redis-server and the states in which it refuses a
command whole before running it (past maxmemory, a replica, busy, a failed save, short of
replicas)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import redis

from tests.chaos.backends import RedisServer, free_port

KINDS = ("full", "replica", "busy", "misconf", "noreplicas")


class OwnServer(RedisServer):
    """The tests' private redis-server, whose ``dir`` a test may move (a protected config)."""

    def _args(self) -> list[str]:
        return [*super()._args(), "--enable-protected-configs", "yes"]


class Refusal:
    """A state in which the server refuses a command before running it: ``begin`` enters it,
    ``end`` leaves it, ``logged`` is what the API's one log line says."""

    def __init__(self, url: str, kind: str) -> None:
        self.url, self.kind = url, kind
        self.busy: threading.Thread | None = None
        self.dir = ""
        self.logged = {
            "full": "out of memory",
            "replica": "ReadOnlyError: You can't write",
            "busy": "busy running a script",
            "misconf": "unable to persist to disk",
            "noreplicas": "short of replicas",
        }[kind]

    def begin(self) -> None:
        with redis.Redis.from_url(self.url) as r:
            if self.kind == "full":  # past maxmemory (noeviction): OOM
                r.config_set("maxmemory", 1)
            elif self.kind == "replica":  # a failed-over primary that came back as a replica: READONLY
                r.replicaof("127.0.0.1", str(free_port()))  # a primary that never answers: the data stays
            elif self.kind == "misconf":  # an RDB save that failed (its directory gone): MISCONF
                self.dir = r.config_get("dir")["dir"]
                gone = Path(self.dir) / "gone"
                gone.mkdir()
                r.config_set("save", "3600 1")
                r.config_set("dir", str(gone))
                gone.rmdir()
                r.bgsave()  # answers once the child is forked: in progress until it fails
                while (p := r.info("persistence"))["rdb_bgsave_in_progress"]:
                    pass
                assert p["rdb_last_bgsave_status"] == "err", p
            elif self.kind == "noreplicas":  # fewer replicas than min-replicas-to-write: NOREPLICAS
                r.config_set("min-replicas-to-write", 1)
            else:  # another client's script past busy-reply-threshold: BUSY
                r.config_set("busy-reply-threshold", 50)
                self.busy = threading.Thread(target=self._spin)
                self.busy.start()
                self._until_busy()

    def _spin(self) -> None:
        with redis.Redis.from_url(self.url) as r, contextlib.suppress(redis.ResponseError):
            r.eval("while true do end", 0)  # until SCRIPT KILL

    def _until_busy(self) -> None:
        with redis.Redis.from_url(self.url) as r:
            while True:
                try:
                    r.ping()
                except redis.ResponseError as exc:
                    assert str(exc).startswith("BUSY"), exc
                    return
                assert self.busy is not None and self.busy.is_alive()

    def end(self) -> None:
        with redis.Redis.from_url(self.url) as r:
            if self.kind == "full":
                r.config_set("maxmemory", 0)
            elif self.kind == "replica":
                r.replicaof("NO", "ONE")
            elif self.kind == "misconf":
                r.config_set("dir", self.dir)
                r.config_set("save", "")
                r.config_set("stop-writes-on-bgsave-error", "no")
            elif self.kind == "noreplicas":
                r.config_set("min-replicas-to-write", 0)
            else:
                assert self.busy is not None
                r.script_kill()
                self.busy.join()
