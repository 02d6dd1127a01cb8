--[[ delivery_finish: record delivery attempts' results, each atomically with its next state
  (execution and cue keys are derived from ARGV[2], the partition's key prefix, in the same slot)
  KEYS[1] leases: zset, execution id → lease expiry µs
  KEYS[2] retries: zset, execution id → next retry µs
  KEYS[3] outbox: stream
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] group: the outbox's consumer group
  ARGV[4..] attempts: 12 values per attempt: execution id, result "ok" | "fail", http status
    ("" = none), error message ("" = none), next retry µs ("" = no attempts left), outcome
    deadline µs ("" = not armed), stream entry id ("" = none), lease expiry µs the attempt holds
    (its fencing token, from delivery_start / delivery_extend), then the outcome the 2xx
    response body carried (CONTRACT.md §10.6; "" = none): outcome JSON, success "1" | "0",
    outcome_state, error text — recorded here, after the delivery's own result and in the same
    call, unless the execution already has an outcome (a crash cannot record the delivery and
    lose the body's outcome)
  An attempt holding a permit of its cue's delivery.max_concurrency gives it back here, and the
  oldest waiters the cue's current cap lets through get theirs with a fresh outbox entry
  (lib/cue_cap.lua).
  Whether the execution decides a one-time cue is read here (lib/one_time.lua), as in every
  other script that ends an execution.
  A result is recorded only while the leases zset holds exactly that attempt's lease: an attempt
  taken over meanwhile (its lease expired and another dispatcher leased the execution again)
  is fenced out and touches nothing — not the execution, not the lease, not the stream entry,
  which the current holder still needs. A final failure runs on_failure in the same call
  (lib/alert.lua: pause, the e-mail and webhook notices).
  returns three values per attempt: OK, the new status, and 1 if the body's outcome was recorded
    (else 0) | CONFLICT, "", 0: fenced out, nothing recorded | WRONG_STATE, "", 0: the lease was
    held but the execution is no longer in flight (e.g. deleted) ]]
--!include dirty
--!include set_cue_status
--!include one_time
--!include alert
--!include record_outcome
--!include exec_index
--!include cue_cap
--!include overlap
--!include outbox_ack
local now, pfx, group = ARGV[1], ARGV[2], ARGV[3]
local out = {}
local marks = {}  -- snapshot dirty marks, written by dirty_flush at the end
local defer, cues = {}, {}  -- record_outcome's deferred index removals and run counts
local acks = {}  -- stream entries to acknowledge and delete, together at the end (outbox_ack)
-- the usual counts' successors, as text (a table lookup; tonumber is two strtod, ~1.4k
-- instructions): an attempt's, a cue's runs (absent: '1')
local NEXT_ATT = {[false] = '1', ['0'] = '1', ['1'] = '2', ['2'] = '3', ['3'] = '4', ['4'] = '5'}

-- a batch's listing moves (lib/exec_index.lua): the accounts' registries written once per zset
-- at the end, for an attempt whose response carried no outcome (record_outcome moves an
-- execution a second time, which a deferred batch cannot hold: each execution moves at most
-- once there; that attempt's move is written at once)
local ixd = #ARGV > 15 and ix_deferred() or nil

local function finish(eid, result, hs, em, nxr, od, entry, lease, ixd)
  local held = redis.call('ZSCORE', KEYS[1], eid)
  -- (the strings first: the lease comes back as ZSCORE spells it, and a tonumber is two strtod)
  if not held or (held ~= lease and tonumber(held) ~= tonumber(lease)) then return STATUS.CONFLICT end
  local ek = pfx .. 'exec:' .. eid
  redis.call('ZREM', KEYS[1], eid)
  if entry ~= '' then acks[#acks + 1] = entry end
  local e = redis.call('HMGET', ek, 'st', 'cue', 'acct', 'oc', 'tb', 'cp', 'att', 'ca', 'os', 'cla', 'cw', 'ix')
  if e[6] == '1' then cap_release(pfx, e[2], eid, now) end  -- the cue's permit, to its next waiter
  if e[1] ~= 'delivering' then return STATUS.WRONG_STATE end
  local ck = pfx .. 'cue:' .. e[2]
  -- what the attempt reads of its cue, in one call: 'status' is in every cue hash (absent: the
  -- cue is gone, or only a fragment a counter left, which is not written to either), the run
  -- count, the schedule (decides_cue) and the one waiting behind it (ov_settled)
  local cf = redis.call('HMGET', ck, 'status', 'rc', 'sch', 'bw')
  local cue_exists = cf[1] ~= false
  dirty_at(pfx, 'exec:' .. eid, marks)
  if cue_exists then dirty_at(pfx, 'cue:' .. e[2], marks) end
  -- one write of the hash: the result, the attempt counted, `ix` when the cells change (ix_move)
  local status, w
  if result == 'ok' then
    if od ~= '' and not e[4] then
      status = 'pending_outcome'
      w = {'st', status, 'hs', hs, 'ua', now, 'da', now, 'em', '', 'od', od}
      redis.call('ZADD', pfx .. 'deadlines', od, eid)
    else
      status = 'success'
      w = {'st', status, 'hs', hs, 'ua', now, 'da', now, 'em', ''}
    end
  elseif nxr ~= '' then
    status = 'retrying'
    w = {'st', status, 'hs', hs, 'ua', now, 'em', em, 'nxr', nxr}
    redis.call('ZADD', KEYS[2], nxr, eid)
  else
    status = 'failed'
    w = {'st', status, 'hs', hs, 'ua', now, 'em', em}
  end
  w[#w + 1] = 'att'
  w[#w + 1] = NEXT_ATT[e[7]] or string.format('%d', (tonumber(e[7]) or 0) + 1)
  local new = ix_of(status, e[9], e[5], e[10], e[11])
  if ix_move(pfx, eid, e[3], e[2], e[8], e[10], e[12] or '', new, ixd) then
    w[#w + 1] = 'ix'; w[#w + 1] = new
  end
  redis.call('HSET', ek, unpack(w))
  -- the run counted, and the last run when it ended: one write of the cue
  local rc = cue_exists and (NEXT_ATT[cf[2]] or string.format('%d', (tonumber(cf[2]) or 0) + 1))
  if status == 'success' or status == 'failed' then
    if cue_exists then redis.call('HSET', ck, 'rc', rc, 'lr', now) end
    if cue_exists and decides_cue(pfx, e[2], e[5], cf[3]) then
      set_cue_status(pfx, e[2], e[3], status == 'success' and 'completed' or 'failed')
    end
    if status == 'failed' then
      alert_final_failure(pfx, eid, e[2], e[3], now)  -- streak, on_failure pause and notices (§12)
    end
    if cue_exists then ov_settled(pfx, e[2], now, cf[4]) end  -- buffer_one: release the one waiting behind it
  elseif cue_exists then
    redis.call('HSET', ck, 'rc', rc)
  end
  return STATUS.OK, status
end

for i = 4, #ARGV, 12 do
  local eid = ARGV[i]
  local code, status = finish(eid, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
    ARGV[i + 6], ARGV[i + 7], ARGV[i + 8] == '' and ixd or nil)
  local recorded = 0
  if ARGV[i + 8] ~= '' and (status == 'success' or status == 'pending_outcome') then
    local got, st = record_outcome(pfx, eid, '', ARGV[i + 8], ARGV[i + 9], ARGV[i + 10],
      ARGV[i + 11], now, defer, cues)
    if got == STATUS.OK then status, recorded = st, 1 end
  end
  out[#out + 1] = code
  out[#out + 1] = status or ''
  out[#out + 1] = recorded
end
if ixd then ix_flush(ixd) end
outcome_flush(pfx, defer, cues, now)
outbox_ack(KEYS[3], group, acks)
dirty_flush(marks)
return out
