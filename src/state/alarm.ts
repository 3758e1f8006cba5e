/**
 * The replicated alarm table (etcd's alarmStore, etcdserver/api/v3alarm) and
 * the space quota's cost of a command (etcd's etcdserver/quota.go).
 *
 * An alarm is (member id, type). Raising and clearing them are Raft commands
 * (command.ts "alarm"), so every replica holds the same table at the same
 * index and it is part of the state machine's snapshot. While an alarm is
 * active the state machine refuses some writes at apply, on every replica
 * alike (machine.ts, etcd's applierV3Capped and applierV3Corrupt):
 * - NOSPACE: puts, txns that put, lease grants ("etcdserver: mvcc: database
 *   space exceeded"); reads, deletes, compaction, revokes and alarm changes
 *   still work, so an operator can free space and disarm.
 * - CORRUPT: puts, deletes, txns, compaction, lease grants and client
 *   revokes ("etcdserver: corrupt cluster").
 *
 * Contract:
 * - Deterministic: `list` and `snapshot` are sorted by (member id, type); the
 *   table holds at most one alarm per (member, type).
 * - `activate` of an active alarm and `deactivate` of an absent one change
 *   nothing (etcd answers the existing alarm, or none).
 * - Alarm types are the two etcd acts on. etcd also stores an ACTIVATE of
 *   type NONE or of an unknown number (and then acts on nothing); the API
 *   layer answers those with no alarm and proposes nothing.
 */

import { assert } from "../raft/index.ts";
import type { Command } from "./command.ts";
import { COUNTER_MIN, counterKey, counterText } from "./counters.ts";
import type { PutRequest, RequestOp, TxnRequest } from "./mvcc.ts";
import { holderValue, resourceKey } from "./resources.ts";
import { semaphoreKey, semaphoreValue } from "./semaphores.ts";

/** etcd AlarmType NOSPACE and CORRUPT. */
export type AlarmType = "nospace" | "corrupt";

/** The alarm types, in etcd's enum order (NOSPACE = 1, CORRUPT = 2). */
export const ALARM_TYPES: readonly AlarmType[] = ["nospace", "corrupt"];

/** etcd AlarmMember: who raised which alarm. Member ids are uint64 (etcd stores any id it is given). */
export interface Alarm {
  readonly member: bigint;
  readonly alarm: AlarmType;
}

/** An alarm in a snapshot: the member id as a decimal string (JSON has no uint64). */
export interface AlarmSnapshotEntry {
  readonly member: string;
  readonly alarm: AlarmType;
}

/** The largest uint64, the upper end of the member id space on the etcd wire. */
export const MAX_ALARM_MEMBER_ID = (1n << 64n) - 1n;

function compareAlarms(a: Alarm, b: Alarm): number {
  if (a.member !== b.member) return a.member < b.member ? -1 : 1;
  return ALARM_TYPES.indexOf(a.alarm) - ALARM_TYPES.indexOf(b.alarm);
}

const keyOf = (member: bigint, alarm: AlarmType): string => `${alarm}/${member}`;

/** The active alarms of one replica. */
export class AlarmTable {
  private readonly active = new Map<string, Alarm>();

  /** Raises `alarm` for `member`; `raised` is false if it was active already. */
  activate(member: bigint, alarm: AlarmType): { readonly alarm: Alarm; readonly raised: boolean } {
    assert(member >= 0n && member <= MAX_ALARM_MEMBER_ID, `alarm: member id ${member} is not a uint64`);
    const k = keyOf(member, alarm);
    const old = this.active.get(k);
    if (old !== undefined) return { alarm: old, raised: false };
    const a: Alarm = { member, alarm };
    this.active.set(k, a);
    return { alarm: a, raised: true };
  }

  /** Clears `alarm` of `member`; the alarm cleared, or undefined if it was not active. */
  deactivate(member: bigint, alarm: AlarmType): Alarm | undefined {
    const k = keyOf(member, alarm);
    const old = this.active.get(k);
    if (old !== undefined) this.active.delete(k);
    return old;
  }

  /** Whether any member has `alarm` active. */
  has(alarm: AlarmType): boolean {
    for (const a of this.active.values()) if (a.alarm === alarm) return true;
    return false;
  }

  /** The active alarms (of one type, or all), sorted by member id then type. */
  list(alarm?: AlarmType): Alarm[] {
    return [...this.active.values()]
      .filter((a) => alarm === undefined || a.alarm === alarm)
      .sort(compareAlarms);
  }

  get size(): number {
    return this.active.size;
  }

  snapshot(): AlarmSnapshotEntry[] {
    return this.list().map((a) => ({ member: a.member.toString(), alarm: a.alarm }));
  }

  /** The table a snapshot holds; `undefined` (a snapshot written before alarms existed) is an empty one. */
  static restore(entries: readonly AlarmSnapshotEntry[] | undefined): AlarmTable {
    const t = new AlarmTable();
    for (const e of entries ?? []) {
      assert(/^(0|[1-9][0-9]*)$/.test(e.member), `alarm snapshot: bad member id ${e.member}`);
      assert(ALARM_TYPES.includes(e.alarm), `alarm snapshot: bad alarm ${String(e.alarm)}`);
      assert(t.activate(BigInt(e.member), e.alarm).raised, "alarm snapshot: an alarm listed twice");
    }
    return t;
  }
}

// ---------------------------------------------------------------------------
// The space quota's cost of a request (etcd quota.go).

/** etcd's estimate of what storing a key's metadata costs (quota.go kvOverhead). */
export const QUOTA_KV_OVERHEAD_BYTES = 256;
/** etcd's estimate of what storing a lease costs (quota.go leaseOverhead). */
export const QUOTA_LEASE_OVERHEAD_BYTES = 64;

/** The longest text a counter value has ("-9223372036854775808"). */
const COUNTER_TEXT_LONGEST = counterText(COUNTER_MIN);

function costPut(r: PutRequest): number {
  return QUOTA_KV_OVERHEAD_BYTES + r.key.length + r.value.length;
}

function costOps(ops: readonly RequestOp[] | undefined): number {
  let n = 0;
  for (const op of ops ?? []) {
    if (op.type === "put") n += costPut(op.request);
    else if (op.type === "txn") n += costTxn(op.request);
  }
  return n;
}

/**
 * The larger branch's puts. Unlike etcd (costTxn looks at the top level
 * only), puts in nested txns count too: otherwise a nested put would get
 * past both the quota check and the NOSPACE alarm.
 */
function costTxn(r: TxnRequest): number {
  return Math.max(costOps(r.success), costOps(r.failure));
}

/**
 * The bytes `cmd` would add to the store, as etcd's quota estimates them
 * before a write: a put its key, value and kvOverhead; a txn its larger
 * branch's puts; a lease grant leaseOverhead; leasehold.v1's writes
 * (acquire, fencedPut, counterAdd, counterCas, semaphoreAcquire) the puts
 * and grants they make; anything else 0 (it may run whatever the quota
 * says). A command with a cost is refused while NOSPACE is active.
 */
export function quotaCostBytes(cmd: Command): number {
  switch (cmd.type) {
    case "put":
      return costPut(cmd.request);
    case "txn":
      return costTxn(cmd.request);
    case "leaseGrant":
      return QUOTA_LEASE_OVERHEAD_BYTES;
    case "acquire":
      // A lease and its claim key, the holder as its value (resources.ts).
      return (
        QUOTA_LEASE_OVERHEAD_BYTES +
        costPut({ key: resourceKey(cmd.resource, cmd.id), value: holderValue(cmd.holder) })
      );
    case "fencedPut":
      return costPut(cmd.request);
    case "requestRelease":
      // A lease and two keys (resources.ts "Release requests"), the request's text as a value.
      return (
        QUOTA_LEASE_OVERHEAD_BYTES +
        2 *
          costPut({ key: resourceKey(cmd.resource, cmd.id), value: holderValue(cmd.requester + cmd.reason) })
      );
    case "counterAdd":
    case "counterCas":
      // The counter key, its value at its longest (counters.ts).
      return costPut({ key: counterKey(cmd.counter), value: COUNTER_TEXT_LONGEST });
    case "semaphoreAcquire":
      // A lease and its claim key, permits and holder as its value (semaphores.ts).
      return (
        QUOTA_LEASE_OVERHEAD_BYTES +
        costPut({
          key: semaphoreKey(cmd.semaphore, cmd.id),
          value: semaphoreValue(cmd.permits, cmd.holder),
        })
      );
    default:
      return 0;
  }
}
