"""Per-(account, task) caps on worker claims held at once (issue 17 item 3, worker transport).

An account sets ``PUT /v1/worker/task-caps/{task}`` {"max_concurrency": n}: at most *n* of its
executions of that task are claimed (held under a lease) at once, over every worker, door and API
process. The setting lives in the account hash (``tcaps``), so authentication already reads it
with the account: an account without task caps pays no extra round trip anywhere.

An account's executions of one task are spread over partitions, so the permits live on the
account's slot (``store/task_caps.py``): a zset per task, execution id → its claim's lease expiry.
A capped claim is three calls: *take* reserves up to the wanted number of free permits (expired
ones pruned first), the claim (``claims_claim.lua``, given the reservation as its budget: an
execution of a capped task with no permit left is skipped and stays in its index, in order),
then *bind* turns the reservation into permits of the executions claimed and gives the rest
back. Heartbeats and lease extensions move the permits; outcomes and releases give them back; a
claimer that dies frees them when their lease expires. A claimer refused for a full cap marks
the task waiting; the give that frees a permit of a waiting task wakes the account's long-polling
claimers on every partition (a ``worksig`` entry marked ``w`` = ``*``)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from cuefast.clock import Clock
from cuefast.errors import TaskCapLimit
from cuefast.models import Account
from cuefast.store import Store
from cuefast.store.claims import Available, Claim, WorkIndex
from cuefast.store.task_caps import parse_caps

MAX_CAPPED_TASKS = 100
"""the most tasks of one account with a claim cap"""

Filter = tuple[str | None, str | None]


def caps_of(account: Account) -> dict[str, int]:
    """The account's task caps (task → n), as authentication read them."""
    return parse_caps(account.tcaps)


def capped_tasks(caps: dict[str, int], filters: Sequence[Filter]) -> list[str]:
    """The capped tasks a claim with these filters can reach: all of them when one filter takes
    any task."""
    if not caps:
        return []
    if any(task is None for task, _ in filters):
        return sorted(caps)
    return sorted({task for task, _ in filters if task in caps})


class Reservation:
    """Permits reserved for one claim (``take``), bound to what it claimed (``bind``)."""

    def __init__(self, store: Store, account: Account, caps: dict[str, int], tasks: list[str]) -> None:
        self.store = store
        self.account = account
        self.caps = caps
        self.tasks = tasks
        self.token = secrets.token_hex(8)
        self.reserved: dict[str, int] = {}

    async def take(self, want: int, lease_until: int, now_us: int) -> None:
        """Reserve up to ``want`` permits of each reachable capped task."""
        wants = {t: (self.caps[t], want) for t in self.tasks}
        self.reserved = await self.store.task_caps.take(
            self.account.id, self.token, lease_until, wants, now_us
        )

    @staticmethod
    def budget(allowed: dict[str, int]) -> str:
        """``claims_claim.lua``'s budget ARGV: every reserved task, with its allowance (0 too)."""
        return "\n".join(f"{t}\n{n}" for t, n in allowed.items())

    def split(self, entries: Sequence[Available], indexes: Sequence[WorkIndex]) -> dict[int, str]:
        """Share the reservation among the claim's calls (one per index; each call enforces only
        its own budget, so the allowances must never add up to more than was reserved): the
        entries in age order, each taking one permit of its index's task, or, from an index of
        any task, one of every capped task (its task is not known before the claim — this may
        leave permits unused this round, never over-use them)."""
        left = dict(self.reserved)
        per: dict[int, dict[str, int]] = {}
        for e in entries:
            allowed = per.setdefault(e.source, dict.fromkeys(left, 0))
            task = indexes[e.source].task
            for t in left if task is None else ([task] if task in left else []):
                if left[t] > 0:
                    left[t] -= 1
                    allowed[t] += 1
        return {i: self.budget(allowed) for i, allowed in per.items()}

    @property
    def blocked(self) -> bool:
        """No permit reserved at all."""
        return not any(self.reserved.values())

    async def bind(self, claimed: Sequence[Claim], now_us: int) -> None:
        """Permits for the claimed executions of capped tasks; the rest back (waking waiters)."""
        rows = [(c.task, c.execution_id, c.lease_until) for c in claimed if c.task in self.reserved]
        bound = [(str(t), e, lx) for t, e, lx in rows]
        if not bound and self.blocked:  # nothing reserved, nothing claimed: nothing to do
            return
        if await self.store.task_caps.bind(self.account.id, self.token, self.reserved, bound, now_us):
            await self.store.task_caps.signal(self.account.id)


class ClaimCaps:
    """The account-facing side: set, read and remove a task's cap; give and extend permits."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def reservation(self, account: Account, filters: Sequence[Filter]) -> Reservation | None:
        """None when no capped task is reachable: the claim runs exactly as without caps."""
        caps = caps_of(account)
        tasks = capped_tasks(caps, filters)
        return Reservation(self.store, account, caps, tasks) if tasks else None

    async def give(self, account: Account, ids: Sequence[str]) -> None:
        """Executions no longer held (outcome recorded, released) give their permits back."""
        caps = caps_of(account)
        if (
            caps
            and ids
            and await self.store.task_caps.give(account.id, sorted(caps), ids, self.clock.now_us())
        ):
            await self.store.task_caps.signal(account.id)

    async def extend(self, account: Account, leases: Sequence[tuple[str, int, str]]) -> None:
        """Held claims whose lease moved, (execution id, lease expiry, task), keep their permits
        until the new expiry; a live claim of a capped task that has none gets it (its claimer
        died before the bind: its placeholder expires with the first lease)."""
        caps = caps_of(account)
        if caps and leases:
            await self.store.task_caps.extend(account.id, sorted(caps), leases, self.clock.now_us())

    async def list(self, account: Account) -> list[dict[str, object]]:
        """Every capped task of the account with its permits held now, by task name."""
        caps = caps_of(account)
        tasks = sorted(caps)
        held = await self.store.task_caps.held(account.id, tasks, self.clock.now_us()) if tasks else []
        return [{"task": t, "max_concurrency": caps[t], "held": n} for t, n in zip(tasks, held, strict=True)]

    async def get(self, account: Account, task: str) -> dict[str, object]:
        cap = caps_of(account).get(task)
        (held,) = await self.store.task_caps.held(account.id, [task], self.clock.now_us())
        return {"task": task, "max_concurrency": cap, "held": held if cap else 0}

    async def put(self, account: Account, task: str, cap: int) -> dict[str, object]:
        now = self.clock.now_us()
        status = await self.store.task_caps.set(account.id, task, cap, MAX_CAPPED_TASKS, now)
        if status.name == "LIMIT":
            raise TaskCapLimit(f"An account may cap at most {MAX_CAPPED_TASKS} tasks")
        # a raised cap may let waiting claims through: wake the account's long polls
        await self.store.task_caps.signal(account.id)
        (held,) = await self.store.task_caps.held(account.id, [task], now)
        return {"task": task, "max_concurrency": cap, "held": held}

    async def delete(self, account: Account, task: str) -> dict[str, object]:
        await self.store.task_caps.set(account.id, task, 0, MAX_CAPPED_TASKS, self.clock.now_us())
        await self.store.task_caps.drop(account.id, task)
        await self.store.task_caps.signal(account.id)
        return {"task": task, "max_concurrency": None, "held": 0}
