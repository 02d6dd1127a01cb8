"""Every Redis key name cuefast uses; nothing else builds key strings.

Layout (DESIGN.md §4, with the project's choices written down in docs/DESIGN.md):

* ``<pfx>:{aNN}:…`` — auth shards (``AUTH_SHARDS``): an account's hash, cue-partition bitmap
  and key rate-limit windows in ``crc32(account id) % 64``, the key map (sha → account) in
  ``crc32(sha) % 64`` — the same shard for every key issued since the shards — and IP windows
  in ``crc32(ip) % 64``. Every auth lookup (with its rate-limit count) is one script on one
  shard.
* ``<pfx>:{auth}:…`` — the global auth slot: e-mail and slug uniqueness (register and e-mail
  changes only), meta, snapshot and poller state, workers_seen.
* ``<pfx>:{a:<account>}:…`` — per-account slot: cue-name uniqueness, the cue label index.
* ``<pfx>:{pNN}:…`` — partition slots: cues, due times, per-account listing indexes,
  executions. A cue's partition is ``crc32(cue_id) % P``; an execution lives in its
  cue's partition and its UUID's last byte ``b`` names it: the partition is ``b % P``. The
  byte is ``crc32(cue_id) % 256`` when P divides 256 (a power of two), so an id keeps naming
  its cue's partition after ``cuefast repartition`` to another power of two
  (``cue_byte``); ids written before that rule carry ``crc32(cue_id) % P`` itself.

Every script's keys are built here from one slot, so each script touches one hash slot
(tests assert it), which is what Redis Cluster needs.
"""

from __future__ import annotations

import zlib

from cuefast.ids import CUE_ID_RE, is_execution_id

__all__ = ["AUTH_SHARDS", "CUE_ID_RE", "CUE_SPREAD", "CUE_STATUSES", "Keys"]
CUE_STATUSES = ("active", "paused", "completed", "failed")
AUTH_SHARDS = 64
CUE_SPREAD = 8
"""the partitions an account's new cues are spread over (``Keys.cue_group``); cues made before
(or while P ≤ 8) may be anywhere: the account's cue-partition bitmap says where"""
"""auth shards ``{a00}``…``{a63}`` (fixed: the shard of an account and of its keys are
functions of it; changing the count is a layout upgrade)"""


class Keys:
    """Key builder for one install (prefix) and partition count."""

    __slots__ = ("_shards", "auth", "partitions", "prefix")

    def __init__(self, prefix: str, partitions: int) -> None:
        self.prefix = prefix
        self.partitions = partitions
        self.auth = f"{prefix}:{{auth}}"
        self._shards = tuple(f"{prefix}:{{a{n:02d}}}" for n in range(AUTH_SHARDS))

    # ---- partitions --------------------------------------------------------------
    def cue_partition(self, cue_id: str) -> int:
        return zlib.crc32(cue_id.encode()) % self.partitions

    def cue_group(self, account_id: str) -> tuple[int, int] | None:
        """(m, r): an account's new cue ids are drawn with ``crc32(id) % m == r``
        (``ids.new_cue_id``), so its cues fall on the ``CUE_SPREAD`` partitions ``≡ r (mod m)``
        — whatever how many cues it has, its listings read at most that many partitions (and a
        hot account still spreads over several nodes of a cluster). None (any id) when P is
        not a power of two above ``CUE_SPREAD``."""
        p = self.partitions
        if p <= CUE_SPREAD or p & (p - 1):
            return None
        m = p // CUE_SPREAD
        return m, zlib.crc32(account_id.encode()) % m

    def cue_byte(self, cue_id: str) -> int:
        """The last byte of the cue's execution ids: ``crc32 % 256`` when P divides 256, so that
        ``byte % P`` is the cue's partition for every power-of-two P; else the partition itself."""
        crc = zlib.crc32(cue_id.encode())
        return crc % 256 if 256 % self.partitions == 0 else crc % self.partitions

    def execution_partition(self, execution_id: str) -> int | None:
        """The partition an execution id names (its last byte modulo P), or None for a malformed id."""
        if not is_execution_id(execution_id):
            return None
        return int(execution_id[-2:], 16) % self.partitions

    def part(self, p: int) -> str:
        return f"{self.prefix}:{{p{p:02d}}}"

    def all_parts(self) -> list[str]:
        return [self.part(p) for p in range(self.partitions)]

    # ---- auth shards and the global auth slot ----------------------------------------
    @staticmethod
    def account_shard(account_id: str) -> int:
        """The auth shard of an account: where its hash, bitmap and key windows live."""
        return zlib.crc32(account_id.encode()) % AUTH_SHARDS

    @staticmethod
    def key_shard(key_sha: str) -> int:
        """The auth shard whose key map resolves this API-key hash (a key issued since the
        shards is drawn so that it is its account's shard: ``AccountService._new_key``)."""
        return zlib.crc32(key_sha.encode()) % AUTH_SHARDS

    @staticmethod
    def ip_shard(ip: str) -> int:
        """The auth shard holding a client IP's rate-limit window."""
        return zlib.crc32(ip.encode()) % AUTH_SHARDS

    def shard(self, n: int) -> str:
        """The slot of auth shard ``n``: ``<pfx>:{aNN}``."""
        return self._shards[n]

    def all_shards(self) -> list[str]:
        return list(self._shards)

    def account_slot(self, account_id: str) -> str:
        return self.shard(self.account_shard(account_id))

    def api_keys(self, shard: int) -> str:
        """hash: sha256(api key) → account id, for the keys whose ``key_shard`` is ``shard``"""
        return f"{self.shard(shard)}:keys"

    def key_index(self, key_sha: str) -> str:
        """the ``api_keys`` hash that resolves ``key_sha``"""
        return self.api_keys(self.key_shard(key_sha))

    def rotated_key(self, key_sha: str) -> str:
        """string with a 24 h TTL: a replaced key (answers key_rotated), in the key's shard"""
        return f"{self.shard(self.key_shard(key_sha))}:rot:{key_sha}"

    def dashboard_session(self, session_sha: str) -> str:
        """string with a TTL: a dashboard session (sha256 of its cookie) → "<key sha>\\t<csrf
        token>", in the auth shard of that sha (cuefast/dashboard/session.py)"""
        return f"{self.shard(self.key_shard(session_sha))}:dsess:{session_sha}"

    @property
    def emails(self) -> str:
        """hash: lower-case e-mail → account id (global auth slot)"""
        return f"{self.auth}:emails"

    @property
    def slugs(self) -> str:
        """hash: slug → account id (global auth slot)"""
        return f"{self.auth}:slugs"

    def account_prefix(self, shard: int) -> str:
        return f"{self.shard(shard)}:acct:"

    def account(self, account_id: str) -> str:
        """hash: the account (see store.ACCOUNT_FIELDS), in its shard"""
        return f"{self.account_slot(account_id)}:acct:{account_id}"

    def cue_partitions_prefix(self, shard: int) -> str:
        return f"{self.shard(shard)}:cparts:"

    def cue_partitions(self, account_id: str) -> str:
        """string, a bitmap: bit p set = the account may have cues (so executions) on partition p;
        absent = not tracked (a restore not yet backfilled): any partition"""
        return f"{self.account_slot(account_id)}:cparts:{account_id}"

    def key_window(self, shard: int, key_sha: str) -> str:
        """list: request times (µs) of one API key in its 60 s rate-limit window, oldest first;
        in its account's shard (``shard``)"""
        return f"{self.shard(shard)}:rl:k:{key_sha}"

    def ip_window(self, ip: str) -> str:
        """list: request times (µs) of one client IP (requests without a valid API key)"""
        return f"{self.shard(self.ip_shard(ip))}:rl:ip:{ip}"

    # ---- login (device codes, magic links, one-time session tokens; §16) ---------------
    def login_shard(self, digest: str) -> str:
        """The auth shard of a login record or window: ``crc32(digest) % 64`` of the SHA-256 hex
        (of a device code, a token, an e-mail) or of the client IP it is about."""
        return self.shard(zlib.crc32(digest.encode()) % AUTH_SHARDS)

    def device_code(self, code_sha: str) -> str:
        """hash (TTL): one device code, by the SHA-256 of its value (store/login.py)"""
        return f"{self.login_shard(code_sha)}:dc:{code_sha}"

    def device_polls(self, code_sha: str) -> str:
        """list: poll times µs of one device code (30 a minute), in the code's shard"""
        return f"{self.login_shard(code_sha)}:rl:dcp:{code_sha}"

    def login_window(self, kind: str, subject: str) -> str:
        """list: request times µs of one login limit (``kind``) for one IP or e-mail digest"""
        return f"{self.login_shard(subject)}:rl:{kind}:{subject}"

    def magic_link(self, token_sha: str) -> str:
        """string (TTL): the lower-case e-mail a standalone magic link (no device code) signs in"""
        return f"{self.login_shard(token_sha)}:ml:{token_sha}"

    def session_once(self, token_sha: str) -> str:
        """string (TTL): the account id a one-time session token (from the poll) is exchanged for"""
        return f"{self.login_shard(token_sha)}:st:{token_sha}"

    def names_prefix(self, shard: int) -> str:
        return f"{self.shard(shard)}:names:"

    def cue_names(self, account_id: str) -> str:
        """hash: cue name → "<cue id>:<reserved at, s>" (name uniqueness), in the account's shard
        (layout 4: so the auth script can reserve a create's name in its round trip)"""
        return f"{self.account_slot(account_id)}:names:{account_id}"

    # ---- per-account slot -----------------------------------------------------------
    def legacy_cue_names(self, account_id: str) -> str:
        """the cue-names hash before layout 4 (moved to ``cue_names`` at startup)"""
        return f"{self.prefix}:{{a:{account_id}}}:names"

    def cue_labels(self, account_id: str) -> str:
        """hash: cue id → "<written µs>,<k>=<v>,…", the label pairs the index holds for the cue"""
        return f"{self.prefix}:{{a:{account_id}}}:labels"

    def label_index(self, account_id: str, key: str, value: str | None = None) -> str:
        """zset: cue id → created µs, the account's cues labelled ``key=value`` (``value`` None:
        those with the key); ``label_index(a, "")`` is the prefix ``cues_set_labels.lua`` gets"""
        tail = key if value is None else f"{key}={value}"
        return f"{self.prefix}:{{a:{account_id}}}:lbl:{tail}"

    def host_permits(self, account_id: str, host: str) -> tuple[str, str]:
        """zset: execution id → µs its permit expires, the attempts holding a permit of the account's
        ``delivery.max_concurrency_per_host`` for callback ``host``; list: ``<p>|<execution id>``
        of those waiting for one, oldest first (``delivery_host_take.lua``)"""
        base = f"{self.prefix}:{{a:{account_id}}}:hcap:{host}"
        return base, base + ":q"

    def task_permits(self, account_id: str) -> tuple[str, str]:
        """The account's per-task claim caps (``claims_cap_take.lua``): the prefix of the permit
        zsets (task t: prefix + t, execution id → its claim's lease expiry µs) and the hash
        task → 1 of the tasks a claimer found full (a give wakes the account's claimers)"""
        base = f"{self.prefix}:{{a:{account_id}}}:tcap"
        return base + ":", base + "w"

    def host_rate(self, account_id: str, host: str) -> tuple[str, str]:
        """string, PX: µs of the next free send slot of the account's webhook attempts to callback
        ``host`` (``host:port``) under ``delivery.max_per_second``; zset: ``<execution id>:<attempt
        number>`` → µs of the slot booked for an attempt that could not go at once
        (``delivery_host_rate.lua``)"""
        base = f"{self.prefix}:{{a:{account_id}}}:rate:{host}"
        return base, base + ":b"

    def workers(self, account_id: str) -> str:
        """zset: worker id → last worker heartbeat µs (the worker registry, §9.6)"""
        return f"{self.prefix}:{{a:{account_id}}}:workers"

    def usage(self, account_id: str, month: str) -> str:
        """hash: monthly counters of one account (``executions``; ``failed`` of executions that
        ended without an outcome), month = YYYY-MM"""
        return f"{self.prefix}:{{a:{account_id}}}:usage:{month}"

    def usage_part(self, p: int, account_id: str, month: str) -> str:
        """hash: the monthly outcome counters (``reported``, ``succeeded``, ``failed``) every
        script that records an outcome adds on its partition (lib/record_outcome.lua); the
        month's usage adds them to ``usage``"""
        return f"{self.part(p)}:usage:{account_id}:{month}"

    @property
    def meta(self) -> str:
        """hash: install-wide facts (``partitions``, ``layout``; ``repartition`` = "<from>><to>" while
        ``cuefast repartition`` runs) checked at start"""
        return f"{self.auth}:meta"

    # ---- partition slots -------------------------------------------------------------
    def cue(self, cue_id: str) -> str:
        """hash: the cue's small fields (models.py); every value <= 64 B keeps it a listpack"""
        return f"{self.part(self.cue_partition(cue_id))}:cue:{cue_id}"

    def cue_config(self, cue_id: str) -> str:
        """string: ``<config JSON>\n<payload JSON>`` of the cue (the values too long for its hash)"""
        return f"{self.part(self.cue_partition(cue_id))}:cue:{cue_id}:cfg"

    def due(self, p: int) -> str:
        """zset: cue id → next fire (µs)"""
        return f"{self.part(p)}:due"

    def cue_index(self, p: int, account_id: str, status: str) -> str:
        """zset: cue id → created_at µs, an account's cues in one status (no "all" index: a
        listing of every status merges the four, which saves a zset entry per cue)"""
        return f"{self.part(p)}:idx:{account_id}:cues:{status}"

    def execution(self, p: int, execution_id: str) -> str:
        return f"{self.part(p)}:exec:{execution_id}"

    # ---- execution listing indexes (lua/lib/exec_index.lua spells them the same) -------
    def ix_account(self, p: int, account_id: str) -> str:
        """hash: cell "<st>|<os>|<tb>" → executions of the account on partition ``p`` in it; each
        cell has zsets ``<registry>|z|<cell>`` (id → created µs) and ``|c|`` (id → claimed_at µs)"""
        return f"{self.part(p)}:ix:a:{account_id}"

    def ix_cue(self, cue_id: str) -> str:
        """the registry (as ``ix_account``) of one cue's executions"""
        return f"{self.part(self.cue_partition(cue_id))}:ix:c:{cue_id}"

    def ix_worker(self, p: int, account_id: str, worker_id: str) -> str:
        """the registry of the account's executions on ``p`` claimed by one worker"""
        return f"{self.part(p)}:ix:w:{account_id}:{len(worker_id.encode())}:{worker_id}"

    def ix_cue_worker(self, cue_id: str, worker_id: str) -> str:
        """the registry of one cue's executions claimed by one worker"""
        return f"{self.part(self.cue_partition(cue_id))}:ix:cw:{cue_id}:{len(worker_id.encode())}:{worker_id}"

    def outbox(self, p: int) -> str:
        """stream: webhook executions ready for delivery (field ``e`` = execution id)"""
        return f"{self.part(p)}:outbox"

    def leases(self, p: int) -> str:
        """zset: execution id → lease expiry µs of an attempt in flight"""
        return f"{self.part(p)}:leases"

    def retries(self, p: int) -> str:
        """zset: execution id → next retry µs"""
        return f"{self.part(p)}:retry"

    def deadlines(self, p: int) -> str:
        """zset: execution id → outcome deadline µs (armed deadlines)"""
        return f"{self.part(p)}:deadlines"

    def delayed(self, p: int) -> str:
        """zset: webhook execution id → send_at µs (fires scheduled for later)"""
        return f"{self.part(p)}:delayed"

    def idempotency(self, cue_id: str, key_digest: str) -> str:
        """string (24 h TTL): "<fingerprint>|<execution id>|<response JSON>" of a fire"""
        return f"{self.part(self.cue_partition(cue_id))}:idem:{cue_id}:{key_digest}"

    def work(self, p: int, account_id: str) -> str:
        """zset: an account's claimable worker executions → scheduled_for µs"""
        return f"{self.part(p)}:work:{account_id}"

    def work_filtered(self, p: int, account_id: str, task: str | None, agent: str | None) -> str:
        """zset: the claimable worker executions of one task and/or agent → scheduled_for µs
        (spelled exactly as ``lua/lib/work_index.lua`` builds it)"""
        base = self.work(p, account_id)
        if task and agent:
            return f"{base}:ta:{len(task.encode())}:{task}:{agent}"
        if task:
            return f"{base}:t:{task}"
        if agent:
            return f"{base}:a:{agent}"
        return base

    def claims(self, p: int) -> str:
        """zset: claimed worker execution id → lease expiry µs"""
        return f"{self.part(p)}:claims"

    def unclaimed(self, p: int) -> str:
        """zset: claimable worker execution id → when it became claimable µs (missed timeouts)"""
        return f"{self.part(p)}:unclaimed"

    def work_signal(self, p: int) -> str:
        """stream (capped): one entry ``a`` = account id whenever worker work becomes claimable"""
        return f"{self.part(p)}:worksig"

    @property
    def workers_seen(self) -> str:
        """zset: "<account>|<worker id>" → last worker heartbeat µs, over every account (the
        install-wide count in /health; entries older than a day are dropped)"""
        return f"{self.auth}:workers_seen"

    def worker_info(self, account_id: str) -> str:
        """hash: worker id → "<registered µs>|<handlers JSON>" (the worker registry, §9.6)"""
        return f"{self.prefix}:{{a:{account_id}}}:workerinfo"

    def replays_active(self) -> str:
        """zset: running bulk-replay job id → µs its next batch may start (or its runner's
        lease ends); the ``{replays}`` slot holds every replay job's keys"""
        return f"{self.prefix}:{{replays}}:active"

    def replay(self, job_id: str) -> str:
        """hash: a bulk-replay job (``store/replays.py``)"""
        return f"{self.prefix}:{{replays}}:job:{job_id}"

    def replay_ids(self, job_id: str) -> str:
        """list: the source execution ids a bulk-replay job selected, in listing order"""
        return f"{self.prefix}:{{replays}}:job:{job_id}:ids"

    def replay_idem(self, account_id: str, key_digest: str) -> str:
        """string (24 h TTL): "<fingerprint>|<job id>" of a bulk replay's Idempotency-Key"""
        return f"{self.prefix}:{{replays}}:idem:{account_id}:{key_digest}"

    def echo(self, token: str) -> str:
        """string (300 s TTL): an echo request's JSON record (§16.5)"""
        return f"{self.prefix}:{{echo}}:rec:{token}"

    def echo_rate(self, ip: str, hour: int) -> str:
        """string (1 h TTL): echo requests stored for one client IP in one hour"""
        return f"{self.prefix}:{{echo}}:ip:{ip}:{hour}"

    # ---- alerts and notices (docs/DESIGN.md "Alerts") ----------------------------------
    def alert(self, p: int, alert_id: str) -> str:
        """hash: one alert (acct, cue, eid, type, msg, md, ca), in its execution's partition"""
        return f"{self.part(p)}:alert:{alert_id}"

    def alert_index(self, p: int, account_id: str, alert_type: str | None = None) -> str:
        """zset: alert id → created_at µs, an account's alerts (of one type) on one partition"""
        suffix = "" if alert_type is None else f":{alert_type}"
        return f"{self.part(p)}:idx:{account_id}:alerts{suffix}"

    def notices(self, p: int) -> str:
        """stream: notices to send (``k`` = "a" alert webhook | "f" on_failure e-mail, ``i`` = alert
        or execution id, ``n`` = attempt), consumer group ``notifiers``"""
        return f"{self.part(p)}:notices"

    def notice_retries(self, p: int) -> str:
        """zset: "<kind>|<id>|<attempt>" → when that notice is sent again µs"""
        return f"{self.part(p)}:noticeretry"

    def mail_count(self, account_id: str, hour: int) -> str:
        """string (1 h TTL): on_failure e-mails sent to one account in one clock hour"""
        return f"{self.prefix}:{{a:{account_id}}}:mail:{hour}"

    # ---- metrics slot (cuefast/metrics.py) ---------------------------------------------
    @property
    def metrics_data(self) -> str:
        """hash: the install's counters and histogram buckets, "<metric>\\t<labels…>" → int
        (every process adds its deltas with HINCRBY)"""
        return f"{self.prefix}:{{metrics}}:data"

    @property
    def metrics_processes(self) -> str:
        """zset: "<roles>|<host>-<pid>" → last metrics flush µs"""
        return f"{self.prefix}:{{metrics}}:procs"

    @property
    def snapshot(self) -> str:
        """hash: the PostgreSQL snapshotter's state; field ``last_ok_us`` = end of the last
        successful snapshot (µs), read by /metrics as cuefast_snapshot_lag_seconds"""
        return f"{self.auth}:snapshot"

    # ---- snapshots (docs/DESIGN.md "Snapshots, retention and restore") --------------------
    def slots(self) -> list[str]:
        """Every slot that holds snapshotted objects: each auth shard (accounts), then each
        partition."""
        return [*self.all_shards(), *self.all_parts()]

    @staticmethod
    def dirty(slot: str) -> str:
        """set: ``<kind>:<id>`` members (``acct:…``, ``cue:…``, ``exec:…``, ``alert:…``) changed
        since their last snapshot; ``<slot>:<member>`` is the object's hash (``lua/lib/dirty.lua``)"""
        return f"{slot}:dirty"

    @staticmethod
    def dirty_processing(slot: str) -> str:
        """set: dirty members taken by the snapshotter and not yet committed to PostgreSQL"""
        return f"{slot}:dirty:proc"

    @staticmethod
    def trim_handoff(part: str) -> str:
        """set: execution ids ``snapshots_trim.lua`` removed from this partition whose PostgreSQL rows
        are not yet marked history (``in_redis = false``); listings read those rows through it"""
        return f"{part}:trimmed"

    @property
    def trim_pending(self) -> str:
        """string: set before a trim hands executions off, deleted once every hand-off set is
        empty again (listings read the hand-off sets only while it exists)"""
        return f"{self.prefix}:{{snap}}:trimming"

    def has_history(self, account_id: str) -> str:
        """string: set once retention moved any of the account's executions to PostgreSQL only
        (listings skip the PostgreSQL query until then)"""
        return f"{self.prefix}:{{a:{account_id}}}:hist"

    @property
    def snapshot_lease(self) -> str:
        """string (PX): the token of the one active snapshotter"""
        return f"{self.prefix}:{{snap}}:lease"

    @property
    def snapshot_requests(self) -> str:
        """hash: ``asked`` (snapshots requested by ``cuefast snapshot``), ``served`` (the highest
        request a complete snapshot began after) — ``lua/snapshots_request.lua``"""
        return f"{self.prefix}:{{snap}}:req"

    @property
    def wake(self) -> str:
        """stream, capped ~64: ``t`` = a due time µs a writer made due within ``wake.HORIZON_US``
        (the scheduler blocks on it between passes). One slot, on purpose: every scheduler reads it
        with one blocking XREAD (on Redis Cluster that is one node's connection)."""
        return f"{self.prefix}:{{sched}}:wake"

    @property
    def poller(self) -> str:
        """hash: the scheduler's last cycle (for /health)"""
        return f"{self.auth}:poller"
