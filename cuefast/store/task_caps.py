"""Per-(account, task) claim caps: the setting (account hash) and the permits (account slot).

The setting is the account hash's ``tcaps`` field; the permits are zsets on the account's slot,
scored by the claims' lease expiry. ``services/claim_caps.py`` says when each is called."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from cuefast.store.repository import Repository
from cuefast.store.scripts import Arg, Script
from cuefast.store.status import Status

SET = Script("accounts_task_cap", keys=("account",), argv=("now", "task", "cap", "limit"))
TAKE = Script("claims_cap_take", keys=("waiting",), argv=("now", "prefix", "token", "until"), rest="caps")
BIND = Script("claims_cap_bind", keys=("waiting",), argv=("now", "prefix", "token", "tasks"), rest="rest")
GIVE = Script("claims_cap_give", keys=("waiting",), argv=("now", "prefix", "tasks"), rest="rest")
EXTEND = Script("claims_cap_extend", keys=("waiting",), argv=("now", "prefix", "tasks"), rest="rest")

_CAPS = msgspec.json.Decoder(dict[str, int])


def parse_caps(raw: str) -> dict[str, int]:
    """The account's ``tcaps`` field: task → cap ("" = none)."""
    return _CAPS.decode(raw) if raw else {}


class TaskCaps(Repository):
    SCRIPTS = (SET, TAKE, BIND, GIVE, EXTEND)

    async def set(self, account_id: str, task: str, cap: int, limit: int, now_us: int) -> Status:
        """Set (``cap`` > 0) or remove (0) the task's cap: OK | NOT_FOUND | LIMIT."""
        res = await self.scripts.run(SET, [self.keys.account(account_id)], [now_us, task, cap, limit])
        return Status(int(res[0]))

    async def held(self, account_id: str, tasks: Sequence[str], now_us: int) -> list[int]:
        """Permits held per task now (unexpired; reserved ones included)."""
        prefix, _ = self.keys.task_permits(account_id)
        async with self.wire.pipeline() as pipe:
            for t in tasks:
                pipe.zcount(prefix + t, now_us, "+inf")
            return [int(n) for n in await pipe.execute()]

    async def drop(self, account_id: str, task: str) -> None:
        """Forget a removed cap's permits."""
        prefix, _ = self.keys.task_permits(account_id)
        await self.wire.call("DEL", prefix + task)

    async def take(
        self, account_id: str, token: str, until_us: int, wants: Mapping[str, tuple[int, int]], now_us: int
    ) -> dict[str, int]:
        """Reserve up to ``want`` permits per task ((cap, want) per task): the number reserved."""
        prefix, waiting = self.keys.task_permits(account_id)
        args: list[Arg] = [now_us, prefix, token, until_us]
        for task, (cap, want) in wants.items():
            args += [task, cap, want]
        res = await self.scripts.run(TAKE, [waiting], args)
        return {task: int(n) for task, n in zip(wants, res, strict=True)}

    async def bind(
        self,
        account_id: str,
        token: str,
        reserved: Mapping[str, int],
        claimed: Sequence[tuple[str, str, int]],
        now_us: int,
    ) -> bool:
        """Turn the reservation into permits of the ``claimed`` (task, execution id, lease expiry)
        and give the rest back; True when that should wake the account's waiting claimers."""
        prefix, waiting = self.keys.task_permits(account_id)
        args: list[Arg] = [now_us, prefix, token, len(reserved)]
        for task, n in reserved.items():
            args += [task, n]
        for task, eid, lx in claimed:
            args += [task, eid, lx]
        return int(await self.scripts.run(BIND, [waiting], args)) == 1

    async def give(self, account_id: str, tasks: Sequence[str], ids: Sequence[str], now_us: int) -> bool:
        """Give back the permits of executions no longer held; True: wake the waiting claimers."""
        if not ids or not tasks:
            return False
        prefix, waiting = self.keys.task_permits(account_id)
        res = await self.scripts.run(GIVE, [waiting], [now_us, prefix, len(tasks), *tasks, *ids])
        return int(res) == 1

    async def extend(
        self, account_id: str, tasks: Sequence[str], leases: Sequence[tuple[str, int, str]], now_us: int
    ) -> int:
        """Move the permits of these (execution id, new lease expiry, task — "" unknown) to the new
        expiry; a claim of a known capped task without one gets it (``claims_cap_extend.lua``)."""
        if not leases or not tasks:
            return 0
        prefix, waiting = self.keys.task_permits(account_id)
        args: list[Arg] = [now_us, prefix, len(tasks), *tasks]
        for eid, lx, task in leases:
            args += [eid, lx, task]
        return int(await self.scripts.run(EXTEND, [waiting], args))

    async def after_reap(
        self, account_id: str, renewed: Sequence[tuple[str, int]], ended: Sequence[str], now_us: int
    ) -> None:
        """The reaper judged expired claims of the account: renewed ones (worker alive) keep
        their permits until the new lease expiry; re-offered and failed ones give them back (they
        expired with the lease already: this wakes the waiters). Also the claims the scheduler's
        ``cancel_previous`` ended (``ended`` only). Reads the account's caps (one ``HGET``) since
        neither caller has the account: only on these rare paths."""
        caps = parse_caps(str(await self.redis.hget(self.keys.account(account_id), "tcaps") or ""))
        if not caps:
            return
        tasks = sorted(caps)
        await self.extend(account_id, tasks, [(eid, lx, "") for eid, lx in renewed], now_us)
        if await self.give(account_id, tasks, ended, now_us):
            await self.signal(account_id)

    async def rebuild(self, claims: Sequence[tuple[str, str, str, int]]) -> int:
        """After a restore (permits are not snapshotted): a permit for each restored claim
        (account id, execution id, task, lease expiry µs) of a task its account caps, scored by its
        lease. One ``HGET`` of each account's caps, one pipeline of ``ZADD``s; returns the number
        written."""
        accounts = sorted({acct for acct, _, task, _ in claims if task})
        if not accounts:
            return 0
        async with self.wire.pipeline() as pipe:
            for acct in accounts:
                pipe.hget(self.keys.account(acct), "tcaps")
            caps = {
                a: parse_caps(str(raw or "")) for a, raw in zip(accounts, await pipe.execute(), strict=True)
            }
        rows = [(acct, eid, task, lx) for acct, eid, task, lx in claims if task in caps.get(acct, {})]
        if rows:
            async with self.wire.pipeline() as pipe:
                for acct, eid, task, lx in rows:
                    key = self.keys.task_permits(acct)[0] + task
                    pipe.zadd(key, {eid: lx})
                    pipe.expire(key, 86_400)
                await pipe.execute()
        return len(rows)

    async def signal(self, account_id: str) -> None:
        """Wake the account's long-polling claimers everywhere (a permit freed: the work it lets
        through may be on any partition): a ``worksig`` entry marked ``w`` = ``*``."""
        await self.wire.call(
            "XADD", self.keys.work_signal(0), "MAXLEN", "~", 1000, "*", "a", account_id, "w", "*"
        )
