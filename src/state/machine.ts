/**
 * The replicated state machine's apply layer (ARCHITECTURE "The flow of one
 * write"): `apply(index, data)` takes one committed Raft entry, decodes its
 * command (command.ts), checks the client session (session.ts) and runs it
 * against the MVCC store and the lease table. It returns effects as data
 * (CONVENTIONS 2): the client's answer, the watch events, and the lease
 * grants, revokes and checkpoints the leader's Lessor must hear about.
 *
 * Contract:
 * - Deterministic: the same entries in the same order give byte-equal
 *   snapshots and equal results on every replica.
 * - Indexes strictly increase (the host may skip entries that carry no
 *   command, such as conf changes); empty data is Raft's no-op entry.
 * - Malformed data answers "decodeError" and changes nothing but the applied
 *   index (and session expiry, which is a function of the index alone).
 * - A failed command changes nothing (MvccStore and LeaseTable check before
 *   they write); its outcome is still remembered for its session.
 * - Lease revocation: the lease and its keys go at the same index; the keys
 *   of one revoke are deleted in ONE revision, one delete event per key in
 *   key order; a lease with no keys takes no revision.
 * - `leaseExpire` deletes the keys of the whole batch in ONE revision (etcd
 *   takes one per lease). The batch is one proposal and is applied
 *   atomically anyway; one revision means one watch batch and one history
 *   step instead of N, and N leases expiring together cost O(K log K) for K
 *   keys (ARCHITECTURE rule 8). Watchers still see one delete event per key
 *   (rule 2); what they lose is the ability to tell the leases of one batch
 *   apart by revision, which no lease rule relies on.
 * - Snapshot: the whole state (MVCC, leases, sessions with their stored
 *   results, applied index) in a canonical encoding; `restore` gives a
 *   machine no observer can tell from the one that made it. Format 2 (what
 *   `snapshot` writes): the byte 0x02, a length-prefixed UTF-8 JSON header
 *   with everything but the key space and the lease table, then those two
 *   in binary (MvccStore.writeSnapshot, LeaseTable.writeSnapshot): about a
 *   quarter of format 1's size, and written without an object per version.
 *   Format 1 (before): the whole state as one UTF-8 JSON document, starting
 *   with "{"; `restore` reads both, and `snapshotToJson` turns either into
 *   format 1, for people and tools.
 * - Alarms (alarm.ts) are replicated state: raised and cleared by "alarm"
 *   commands, kept in snapshots (a snapshot without them restores with
 *   none). While NOSPACE is active, commands with a quota cost (puts, txns
 *   that put, lease grants) fail with "noSpace"; while CORRUPT is active,
 *   client writes, compactions, grants and revokes fail with "corrupt"
 *   (etcd's applierV3Capped / applierV3Corrupt; etcd's last raised alarm
 *   picks the applier, here CORRUPT wins whenever it is active). The
 *   leader's own lease duties (expiry, checkpoints) are never refused.
 * - Auth (auth.ts) is replicated state: users, roles, permissions, the auth
 *   revision and the tokens, in snapshots (absent: auth off, no users). While
 *   auth is enabled every client command is checked at apply for the caller
 *   it carries (`auth`, etcd's request header): key permissions for KV
 *   writes (nested txns included), root for compaction and for auth
 *   management, a caller for lease grants, write access to a lease's keys for
 *   its revoke; a caller identified at an older auth revision is refused
 *   (etcd's ErrAuthOldRevision), so a revoke racing a write is safe. A
 *   refusal changes nothing and is answered like any failure.
 * - leasehold.v1 (resources.ts, counters.ts, semaphores.ts): acquire,
 *   release, fencedPut, counterAdd, counterCas, semaphoreAcquire and
 *   semaphoreRelease are ordinary key and lease writes under those modules'
 *   rules, each ONE entry (an Add is not a read-modify-write of the client's).
 *   The refusals their rules foresee (held, stale token, overflow, not a
 *   number, full, other permits) are results of the command's own kind that
 *   change nothing, not "failed". Like every client command they may carry a
 *   session, so a retried Add or Acquire applies once (session.ts).
 */

import type { ConfChange, MemberId } from "../raft/index.ts";
import { assert, assertNever, memberId } from "../raft/index.ts";
import type { Alarm, AlarmSnapshotEntry, AlarmType } from "./alarm.ts";
import { AlarmTable, QUOTA_LEASE_OVERHEAD_BYTES, quotaCostBytes } from "./alarm.ts";
import type { AuthError, AuthStoreSnapshot, AuthView, LeaseKeys } from "./auth.ts";
import { AuthStore, deleteChecks, leaseWriteChecks, putChecks, txnChecks } from "./auth.ts";
import { ByteReader, ByteWriter, base64ToBytes, bytesToBase64, prefixEnd } from "./bytes.ts";
import type { AuthCommand, ClientSession, Command, CommandType } from "./command.ts";
import { tryDecodeCommand } from "./command.ts";
import type { CounterValue } from "./counters.ts";
import { addInt64, counterKey, counterText, counterValueOf } from "./counters.ts";
import { crc32c } from "./crc32c.ts";
import type { LeaseInfo, LeaseTableSnapshot, LeaseTimeToLiveInfo } from "./lease.ts";
import { LeaseTable } from "./lease.ts";
import type { LeaseCheckpoint } from "./lessor.ts";
import type { Limits } from "./limits.ts";
import type { MemberRecord, MemberTableSnapshot } from "./members.ts";
import { MemberTable } from "./members.ts";
import type {
  EventsSinceResult,
  HashKvResult,
  KeyRange,
  MvccError,
  MvccSnapshot,
  PutRequest,
  RangeRequest,
  RangeResult,
  RequestOp,
  ResponseOp,
  WriteOptions,
} from "./mvcc.ts";
import { MvccStore } from "./mvcc.ts";
import type { ReleaseRequest, ResourceClaim } from "./resources.ts";
import {
  claimOf,
  holderValue,
  lockDelayConfigKey,
  lockDelayKey,
  RESOURCE_KEY_PREFIX,
  releaseDeadlineKey,
  releaseRequestKey,
  releaseRequestOf,
  resourceKey,
  resourceNamesPrefix,
  resourcePrefix,
  underClaimPrefix,
} from "./resources.ts";
import type { SemaphoreClaim } from "./semaphores.ts";
import {
  semaphoreClaimOf,
  semaphoreKey,
  semaphorePrefix,
  semaphoreValue,
  semaphoreView,
} from "./semaphores.ts";
import type { SessionOptions, SessionSnapshotEntry } from "./session.ts";
import { SessionTable } from "./session.ts";
import type { KeyValue, KvEvent, LeaseId, Revision } from "./types.ts";
import { leaseId, NO_LEASE } from "./types.ts";
import type { WatchHubOptions } from "./watch.ts";
import { WatchHub } from "./watch.ts";

/** etcd ResponseHeader, the replicated part: the store's revision after the command. */
export interface ResponseHeader {
  readonly revision: Revision;
}

/**
 * Expected failures of a command (CONVENTIONS 7); the MVCC ones as mvcc.ts
 * documents them, plus the lease table's:
 * - leaseExists: "etcdserver: lease already exists"
 * - ttlTooLarge: "etcdserver: too large lease TTL"
 * - leaseNotFound (revoke): "etcdserver: requested lease not found"
 */
export type ApplyError =
  | MvccError
  /** Auth refused the command, or an auth command failed (auth.ts). */
  | AuthError
  | "leaseExists"
  | "ttlTooLarge"
  | "memberNotFound"
  /** release: the lease's claim on the resource belongs to another holder (or there is none). */
  | "notHolder"
  /** NOSPACE is active: "etcdserver: mvcc: database space exceeded". */
  | "noSpace"
  /** CORRUPT is active: "etcdserver: corrupt cluster". */
  | "corrupt";

/** A resource's lock-delay (resources.ts): whose expiry started it, and the lease whose expiry ends it. */
export interface LockDelay {
  readonly holder: string;
  readonly lease: LeaseId;
}

/** A lock-delay an expiry is about to start. */
interface PendingDelay {
  readonly resource: string;
  readonly holder: string;
  readonly seconds: number;
}

/** The answer to one applied entry, etcd-shaped. */
export type CommandResult =
  | { readonly kind: "put"; readonly header: ResponseHeader; readonly prevKv?: KeyValue | undefined }
  | {
      readonly kind: "deleteRange";
      readonly header: ResponseHeader;
      readonly deleted: number;
      readonly prevKvs: readonly KeyValue[];
    }
  | {
      readonly kind: "txn";
      readonly header: ResponseHeader;
      readonly succeeded: boolean;
      readonly responses: readonly ResponseOp[];
    }
  | { readonly kind: "compact"; readonly header: ResponseHeader }
  | {
      readonly kind: "leaseGrant";
      readonly header: ResponseHeader;
      readonly id: LeaseId;
      readonly ttlSeconds: number;
    }
  /** `deleted`: the lease's keys, all deleted at header.revision. */
  | { readonly kind: "leaseRevoke"; readonly header: ResponseHeader; readonly deleted: number }
  /**
   * applied: written to the table; ignored: the lease or that incarnation is
   * gone; rejected: more remaining TTL than the lease's TTL (a leader bug,
   * refused rather than trusted).
   */
  | {
      readonly kind: "leaseCheckpoint";
      readonly header: ResponseHeader;
      readonly applied: number;
      readonly ignored: number;
      readonly rejected: number;
    }
  /** revoked: leases of the batch that existed (the others were gone already). */
  | {
      readonly kind: "leaseExpire";
      readonly header: ResponseHeader;
      readonly revoked: number;
      readonly deleted: number;
    }
  /**
   * acquire applied. granted: the lease and its claim were made (at header.revision, the
   * claim's token); holder: the claim that holds the resource now (ours when it holds at
   * once; the other holder when we wait or were refused); position: claims ahead of ours
   * (0: we hold; with granted false, nothing was made).
   */
  | {
      readonly kind: "acquire";
      readonly header: ResponseHeader;
      readonly granted: boolean;
      readonly id: LeaseId;
      readonly ttlSeconds: number;
      readonly holder: ResourceClaim | undefined;
      readonly position: number;
      /** The lock-delay the resource is in (it counts as one place in `position`). */
      readonly lockDelay: LockDelay | undefined;
    }
  /** release applied: the claim's lease revoked, its keys deleted at header.revision. */
  | { readonly kind: "release"; readonly header: ResponseHeader; readonly deleted: number }
  /**
   * requestRelease applied: `holder` is the holding asked (undefined: nobody held it, nothing
   * made); `deadlineLease` the lease whose expiry is the deadline.
   */
  | {
      readonly kind: "requestRelease";
      readonly header: ResponseHeader;
      readonly holder: ResourceClaim | undefined;
      readonly deadlineLease: LeaseId;
    }
  /** forceRevoke applied: "revoked", or why not (nothing changed). */
  | {
      readonly kind: "forceRevoke";
      readonly header: ResponseHeader;
      readonly outcome: "revoked" | "noClaim" | "notRequested" | "beforeDeadline";
      readonly deleted: number;
    }
  /** fencedPut applied: `ok` when the token was current and the put was made; holder: the current holder. */
  | {
      readonly kind: "fencedPut";
      readonly header: ResponseHeader;
      readonly ok: boolean;
      readonly holder: ResourceClaim | undefined;
      readonly prevKv?: KeyValue | undefined;
    }
  /**
   * counterAdd applied (counters.ts). added: `value` is the new value, written at
   * header.revision; overflow: the sum leaves int64, `value` is the current one, nothing
   * written; notNumber: the stored value is not a number (`stored`: its first bytes),
   * nothing written, `value` 0.
   */
  | {
      readonly kind: "counterAdd";
      readonly header: ResponseHeader;
      readonly outcome: "added" | "overflow" | "notNumber";
      readonly value: bigint;
      readonly stored?: Uint8Array | undefined;
    }
  /**
   * counterCas applied. set: the counter was `expected` and is now `value` (written at
   * header.revision); notSet: it was not, `value` is the current one, nothing written;
   * notNumber: as for counterAdd.
   */
  | {
      readonly kind: "counterCas";
      readonly header: ResponseHeader;
      readonly outcome: "set" | "notSet" | "notNumber";
      readonly value: bigint;
      readonly stored?: Uint8Array | undefined;
    }
  /**
   * semaphoreAcquire applied (semaphores.ts). granted: the lease and its claim were made (at
   * header.revision, the claim's token), `position` claims are older than ours (it holds
   * when position < permits); full: the semaphore has `permits` holders and we would not
   * wait; permitsMismatch: the semaphore exists with other `permits`. Refused: nothing
   * made, `position` is the number of claims. holders: how many hold now (ours included).
   */
  | {
      readonly kind: "semaphoreAcquire";
      readonly header: ResponseHeader;
      readonly outcome: "granted" | "full" | "permitsMismatch";
      readonly id: LeaseId;
      readonly ttlSeconds: number;
      readonly permits: number;
      readonly holders: number;
      readonly position: number;
    }
  /** semaphoreRelease applied: the claim's lease revoked, its keys deleted at header.revision. */
  | { readonly kind: "semaphoreRelease"; readonly header: ResponseHeader; readonly deleted: number }
  | { readonly kind: "noop"; readonly header: ResponseHeader }
  /** memberPublish / memberUpdate applied. */
  | { readonly kind: "member"; readonly header: ResponseHeader }
  /** etcd AlarmResponse: the alarm activated (or already active) or deactivated; none if nothing matched. */
  | { readonly kind: "alarm"; readonly header: ResponseHeader; readonly alarms: readonly Alarm[] }
  /** An auth command applied; `token` for authenticate. */
  | { readonly kind: "auth"; readonly header: ResponseHeader; readonly token?: string | undefined }
  | {
      readonly kind: "failed";
      readonly header: ResponseHeader;
      readonly command: CommandType;
      readonly error: ApplyError;
    }
  /** A retry of a request older than the session's last: nothing applied. */
  | { readonly kind: "sessionStale"; readonly header: ResponseHeader; readonly lastSeq: number }
  /** The client's session is gone (session.ts): nothing applied; open a new session. */
  | { readonly kind: "sessionExpired"; readonly header: ResponseHeader }
  /** The entry's data is not a command: nothing applied. */
  | { readonly kind: "decodeError"; readonly header: ResponseHeader; readonly message: string };

/** What `apply` hands back. */
export interface ApplyResult {
  readonly index: number;
  readonly result: CommandResult;
  /** The result came from the session table (a retry); nothing was applied now. */
  readonly replayed: boolean;
  /** For the watch hub, in revision then op order. */
  readonly events: readonly KvEvent[];
  /** Leases granted, as the table has them now: the leader calls Lessor.onGrant. */
  readonly leaseGrants: readonly LeaseInfo[];
  /** Leases revoked: the leader calls Lessor.onRevoke. */
  readonly leaseRevokes: readonly LeaseId[];
  /** Checkpoints applied or ignored (not rejected): the leader calls Lessor.onCheckpointApplied. */
  readonly leaseCheckpoints: readonly LeaseCheckpoint[];
}

/** Configuration; the same on every member. */
export interface StateMachineOptions {
  readonly limits?: Limits | undefined;
  readonly minLeaseTtlSeconds?: number | undefined;
  readonly sessions?: SessionOptions | undefined;
}

/** The first byte of a format-2 snapshot (format 1 is JSON: it starts with "{"). */
const SNAPSHOT_FORMAT_2 = 0x02;

/** The JSON header of a format-2 snapshot: the state but the key space and the lease table. */
interface SnapshotHeader {
  readonly formatVersion: 2;
  readonly appliedIndex: number;
  readonly sessions: readonly SessionSnapshotEntry[];
  readonly members: MemberTableSnapshot;
  readonly alarms: readonly AlarmSnapshotEntry[];
  readonly auth: AuthStoreSnapshot;
}

/** Format 1's JSON shape (the whole state). */
interface MachineSnapshot {
  readonly formatVersion: 1;
  readonly appliedIndex: number;
  readonly mvcc: MvccSnapshot;
  readonly leases: LeaseTableSnapshot;
  readonly sessions: readonly SessionSnapshotEntry[];
  /** Absent in snapshots written before the member table existed. */
  readonly members?: MemberTableSnapshot;
  /** Absent in snapshots written before alarms existed (none active). */
  readonly alarms?: readonly AlarmSnapshotEntry[];
  /** Absent in snapshots written before auth existed (auth off, no users or roles). */
  readonly auth?: AuthStoreSnapshot;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
/** For values anyone may have written through the etcd API: never throws (apply must not). */
const lenientDecoder = new TextDecoder();

interface Effects {
  events: readonly KvEvent[];
  leaseGrants: LeaseInfo[];
  leaseRevokes: LeaseId[];
  leaseCheckpoints: LeaseCheckpoint[];
}

/** One replica's state. See the file header. */
export class StateMachine {
  /** Replaced only by `restore`. */
  private mvcc: MvccStore;
  private leases: LeaseTable;
  private sessions: SessionTable<CommandResult>;
  private members = new MemberTable();
  private alarms = new AlarmTable();
  private auth = new AuthStore();
  /** The index of the last entry applied (0: none). Invariant: only grows. */
  private applied: number;
  private readonly writeOptions: WriteOptions;

  constructor(options: StateMachineOptions = {}) {
    this.mvcc = new MvccStore({ limits: options.limits });
    this.leases = new LeaseTable(leaseOptions(options));
    this.sessions = new SessionTable(options.sessions);
    this.applied = 0;
    this.writeOptions = {
      leaseExists: (id) => this.leases.has(id),
      internLease: (id) => this.leases.get(id)?.id ?? id,
    };
  }

  /** Applies the committed entry at `index` (> the last one applied). */
  apply(index: number, data: Uint8Array): ApplyResult {
    assert(
      Number.isSafeInteger(index) && index > this.applied,
      `machine: apply ${index} after ${this.applied}`,
    );
    this.applied = index;
    this.sessions.expire(index);
    const fx: Effects = { events: [], leaseGrants: [], leaseRevokes: [], leaseCheckpoints: [] };
    const done = (result: CommandResult, replayed = false): ApplyResult => ({
      index,
      result,
      replayed,
      ...fx,
    });
    if (data.length === 0) return done({ kind: "noop", header: this.header() });
    const decoded = tryDecodeCommand(data);
    if (!decoded.ok)
      return done({ kind: "decodeError", header: this.header(), message: decoded.error.message });
    const cmd = decoded.command;
    const session = sessionOf(cmd);
    if (session !== undefined) {
      const check = this.sessions.check(session, index);
      switch (check.kind) {
        case "apply":
          break;
        case "duplicate":
          return done(check.result, true);
        case "stale":
          return done({ kind: "sessionStale", header: this.header(), lastSeq: check.lastSeq });
        case "expired":
          return done({ kind: "sessionExpired", header: this.header() });
        default:
          return assertNever(check, "session check");
      }
    }
    const result = this.run(cmd, index, fx);
    if (session !== undefined) this.sessions.record(session, index, result);
    return done(result);
  }

  /**
   * Applies the committed membership change at `index` (a conf entry; Raft
   * applies it to its own configuration itself).
   */
  applyConfChange(index: number, cc: ConfChange): void {
    assert(
      Number.isSafeInteger(index) && index > this.applied,
      `machine: apply ${index} after ${this.applied}`,
    );
    this.applied = index;
    this.members.applyConfChange(cc);
  }

  // -- reads -----------------------------------------------------------------

  /** The cluster's members (etcd MemberList). */
  memberList(): MemberRecord[] {
    return this.members.list();
  }

  member(id: MemberId): MemberRecord | undefined {
    return this.members.get(id);
  }

  /** Every id removed from the cluster, ascending. */
  removedMemberIds(): number[] {
    return [...this.members.snapshot().removed];
  }

  /** Whether `id` was removed from the cluster (it may never come back). */
  memberRemoved(id: number): boolean {
    return this.members.isRemoved(id);
  }

  /** The index of the last entry applied (0: none). */
  appliedIndex(): number {
    return this.applied;
  }

  currentRevision(): Revision {
    return this.mvcc.currentRevision();
  }

  compactedRevision(): Revision {
    return this.mvcc.compactedRevision();
  }

  /** etcd Range (serializable: the caller did ReadIndex first for a linearizable read). */
  range(req: RangeRequest): RangeResult {
    return this.mvcc.range(req);
  }

  /** For the watch hub's catch-up; see MvccStore.eventsSince. */
  eventsSince(start: Revision, range: KeyRange, revisionsMax?: number): EventsSinceResult {
    return this.mvcc.eventsSince(start, range, revisionsMax);
  }

  /** Every lease id, ascending (etcd LeaseLeases). */
  leaseIds(): LeaseId[] {
    return this.leases.ids();
  }

  /** A lease as the table has it (granted and last checkpointed TTL, grant index). */
  lease(id: LeaseId): LeaseInfo | undefined {
    return this.leases.get(id);
  }

  /** The replicated part of etcd LeaseTimeToLive; the remaining TTL comes from the leader's Lessor. */
  leaseTimeToLive(id: LeaseId, options: { readonly keys: boolean }): LeaseTimeToLiveInfo | undefined {
    return this.leases.timeToLive(id, options);
  }

  /**
   * A watch hub over this machine's key space. Feed it every applied write:
   * `hub.onWrite(result.events, machine.currentRevision())` after each apply.
   * A restored machine is a new key space: make a new hub.
   */
  createWatchHub(options: WatchHubOptions = {}): WatchHub {
    return new WatchHub(this.mvcc, options);
  }

  /** The lease table, for Lessor.becomeLeader only: never mutate it. */
  /** The auth store, for the API layer's checks and reads only: never mutate it. */
  authStore(): AuthView {
    return this.auth;
  }

  leaseTable(): LeaseTable {
    return this.leases;
  }

  /** The session of `clientId`: its last seq and stored result. */
  session(clientId: string): { readonly lastSeq: number; readonly result: CommandResult } | undefined {
    return this.sessions.get(clientId);
  }

  /** The number of open sessions. */
  sessionCount(): number {
    return this.sessions.size;
  }

  /** The active alarms (of one type, or all), by member id then type (etcd Alarm GET). */
  alarmList(alarm?: AlarmType): Alarm[] {
    return this.alarms.list(alarm);
  }

  /**
   * The size the space quota counts (etcd: the backend's size): the MVCC
   * store's (mvcc.ts sizeBytes: every kept version with its history) plus
   * QUOTA_LEASE_OVERHEAD_BYTES per lease. Grows with writes, shrinks with
   * compaction and revokes. O(1).
   */
  sizeBytes(): number {
    return this.mvcc.sizeBytes() + this.leases.size * QUOTA_LEASE_OVERHEAD_BYTES;
  }

  /** etcd HashKV at `rev` (0: current); see MvccStore.hashKv. */
  hashKv(rev: Revision): HashKvResult {
    return this.mvcc.hashKv(rev);
  }

  /**
   * etcd Hash: a CRC-32C of the whole replicated state (the snapshot) except
   * the applied index, as etcd's leaves out its consistent index: replicas
   * that applied the same entries agree, and entries that change nothing
   * (a leader's no-op, a failed request) leave it alone. O(state).
   */
  stateHash(): number {
    return crc32c(this.encode({ appliedIndex: 0, tokens: true }));
  }

  // -- snapshot ----------------------------------------------------------------

  /** The whole state, in snapshot format 2 (see the file header). */
  snapshot(): Uint8Array {
    return this.encode({ appliedIndex: this.applied, tokens: true });
  }

  /**
   * snapshot() without the auth tokens: what a backup (Maintenance.Snapshot)
   * holds. Tokens are bearer credentials of the live cluster (etcd keeps them
   * in memory only); restoring a backup drops them anyway.
   */
  backup(): Uint8Array {
    return this.encode({ appliedIndex: this.applied, tokens: false });
  }

  private encode(what: { readonly appliedIndex: number; readonly tokens: boolean }): Uint8Array {
    const auth = this.auth.snapshot();
    const header: SnapshotHeader = {
      formatVersion: 2,
      appliedIndex: what.appliedIndex,
      sessions: this.sessions.snapshot(toTagged),
      members: this.members.snapshot(),
      alarms: this.alarms.snapshot(),
      auth: what.tokens ? auth : { ...auth, tokens: [] },
    };
    const w = new ByteWriter();
    w.u8(SNAPSHOT_FORMAT_2).bytes(encoder.encode(JSON.stringify(header)));
    this.mvcc.writeSnapshot(w);
    this.leases.writeSnapshot(w);
    return w.finish();
  }

  /**
   * The machine that made `data` with snapshot() (either format). The data
   * was checked at the storage or transport boundary (checksums); malformed
   * data is a bug.
   */
  static restore(data: Uint8Array, options: StateMachineOptions = {}): StateMachine {
    if (data[0] !== SNAPSHOT_FORMAT_2)
      return StateMachine.fromJson(parseJson<MachineSnapshot>(data), options);
    const r = new ByteReader(data, 1);
    const header = parseJson<SnapshotHeader>(r.bytes());
    assert(header.formatVersion === 2, `machine snapshot: header of format ${String(header.formatVersion)}`);
    const mvcc = MvccStore.readSnapshot(r, { limits: options.limits });
    const leases = LeaseTable.readSnapshot(r, leaseOptions(options), (k) => mvcc.sharedKey(k));
    assert(r.done, "machine snapshot: bytes after the lease table");
    return StateMachine.assemble({ ...header, mvcc, leases }, options);
  }

  /**
   * A snapshot in format 1, the whole state as one JSON document, whichever
   * format `data` is in: for people, tools and tests of the older format.
   * `restore` reads the result as it reads `data`.
   */
  static snapshotToJson(data: Uint8Array): Uint8Array {
    return encoder.encode(JSON.stringify(StateMachine.snapshotObject(data)));
  }

  /** Format 1's object of a snapshot in either format. */
  private static snapshotObject(data: Uint8Array): MachineSnapshot {
    if (data[0] !== SNAPSHOT_FORMAT_2) {
      const snap = parseJson<MachineSnapshot>(data);
      assert(snap.formatVersion === 1, `machine snapshot: unknown format ${String(snap.formatVersion)}`);
      return snap;
    }
    const r = new ByteReader(data, 1);
    const { formatVersion: _format, appliedIndex, ...rest } = parseJson<SnapshotHeader>(r.bytes());
    const mvcc = MvccStore.readSnapshot(r).snapshot();
    const leases = LeaseTable.readSnapshot(r).snapshot();
    assert(r.done, "machine snapshot: bytes after the lease table");
    return { formatVersion: 1, appliedIndex, mvcc, leases, ...rest };
  }

  private static fromJson(snap: MachineSnapshot, options: StateMachineOptions): StateMachine {
    assert(snap.formatVersion === 1, `machine snapshot: unknown format ${String(snap.formatVersion)}`);
    return StateMachine.assemble(
      {
        ...snap,
        mvcc: MvccStore.restore(snap.mvcc, { limits: options.limits }),
        leases: LeaseTable.restore(snap.leases, leaseOptions(options)),
      },
      options,
    );
  }

  /** A machine of restored parts; the small ones are restored here (absent ones: none). */
  private static assemble(
    parts: Omit<MachineSnapshot, "formatVersion" | "mvcc" | "leases"> & {
      readonly mvcc: MvccStore;
      readonly leases: LeaseTable;
    },
    options: StateMachineOptions,
  ): StateMachine {
    assert(
      Number.isSafeInteger(parts.appliedIndex) && parts.appliedIndex >= 0,
      "machine snapshot: bad index",
    );
    const m = new StateMachine(options);
    m.mvcc = parts.mvcc;
    m.leases = parts.leases;
    m.sessions = SessionTable.restore(
      parts.sessions,
      (r) => fromTagged(r) as CommandResult,
      options.sessions,
    );
    m.members = MemberTable.restore(parts.members);
    m.alarms = AlarmTable.restore(parts.alarms);
    m.auth = AuthStore.restore(parts.auth);
    m.applied = parts.appliedIndex;
    return m;
  }

  /**
   * etcd's `snapshot restore`: the state of `data` (a snapshot() of any
   * member, of any cluster, in either format) as the first state of a NEW
   * cluster. Kept: the key space with its history, the leases (each starting
   * over with its full TTL, as if granted at the founders' last index, as
   * etcd's restore re-grants them), the alarms (as etcd keeps them: disarm
   * to clear) and everything else replicated (auth users and roles
   * included); dropped: the auth tokens, the member table and the client
   * sessions. Then `founders` are applied at indexes 1..n, exactly as a
   * new cluster's bootstrap entries (raft bootstrapState) would be, so the
   * result is the state at index n. Malformed data fails an assertion: the
   * caller checked the file's checksum first.
   */
  static restoreAsNewCluster(
    data: Uint8Array,
    founders: readonly ConfChange[],
    options: StateMachineOptions = {},
  ): StateMachine {
    const snap = StateMachine.snapshotObject(data);
    assert(founders.length > 0, "machine: a new cluster needs a founding member");
    const grantIndex = founders.length;
    const { members: _members, ...rest } = snap;
    const fresh: MachineSnapshot = {
      ...rest,
      appliedIndex: 0,
      sessions: [],
      leases: {
        ...snap.leases,
        leases: snap.leases.leases.map((l) => ({ ...l, remainingTtlSeconds: l.ttlSeconds, grantIndex })),
      },
      // Auth tokens name entries of the old log (etcd keeps them in memory only): the users log in again.
      ...(snap.auth === undefined ? {} : { auth: { ...snap.auth, tokens: [] } }),
    };
    const m = StateMachine.fromJson(fresh, options);
    founders.forEach((cc, i) => {
      assert(cc.kind === "addVoter", "machine: founders are voters");
      m.applyConfChange(i + 1, cc);
    });
    return m;
  }

  // -- commands ----------------------------------------------------------------

  private header(): ResponseHeader {
    return { revision: this.mvcc.currentRevision() };
  }

  private failed(command: CommandType, error: ApplyError): CommandResult {
    return { kind: "failed", header: this.header(), command, error };
  }

  private run(cmd: Command, index: number, fx: Effects): CommandResult {
    const refused = this.alarmRefusal(cmd);
    if (refused !== undefined) return this.failed(cmd.type, refused);
    const denied = this.authRefusal(cmd);
    if (denied !== undefined) return this.failed(cmd.type, denied);
    switch (cmd.type) {
      case "put": {
        const r = this.mvcc.put(cmd.request, this.writeOptions);
        if (!r.ok) return this.failed(cmd.type, r.error);
        this.leases.applyLeaseChanges(r.leaseChanges);
        fx.events = r.events;
        return { kind: "put", header: { revision: r.revision }, prevKv: r.prevKv };
      }
      case "deleteRange": {
        const r = this.mvcc.deleteRange(cmd.request);
        if (!r.ok) return this.failed(cmd.type, r.error);
        this.leases.applyLeaseChanges(r.leaseChanges);
        fx.events = r.events;
        return {
          kind: "deleteRange",
          header: { revision: r.revision },
          deleted: r.deleted,
          prevKvs: r.prevKvs,
        };
      }
      case "txn": {
        const r = this.mvcc.txn(cmd.request, this.writeOptions);
        if (!r.ok) return this.failed(cmd.type, r.error);
        this.leases.applyLeaseChanges(r.leaseChanges);
        fx.events = r.events;
        return {
          kind: "txn",
          header: { revision: r.revision },
          succeeded: r.succeeded,
          responses: r.responses,
        };
      }
      case "compact": {
        const r = this.mvcc.compact(cmd.revision);
        if (!r.ok) return this.failed(cmd.type, r.error);
        return { kind: "compact", header: { revision: r.revision } };
      }
      case "leaseGrant": {
        const r = this.leases.grant(cmd.id, cmd.ttlSeconds, { index });
        if (!r.ok) return this.failed(cmd.type, r.reason === "exists" ? "leaseExists" : "ttlTooLarge");
        const info = this.leases.get(r.id);
        assert(info !== undefined, "machine: granted lease not in the table");
        fx.leaseGrants.push(info);
        return { kind: "leaseGrant", header: this.header(), id: r.id, ttlSeconds: r.ttlSeconds };
      }
      case "leaseRevoke": {
        const r = this.leases.revoke(cmd.id, { grantIndex: cmd.grantIndex });
        if (!r.ok) return this.failed(cmd.type, "leaseNotFound");
        fx.leaseRevokes.push(cmd.id);
        const deleted = this.deleteLeaseKeys(r.keys, fx);
        return { kind: "leaseRevoke", header: this.header(), deleted };
      }
      case "leaseExpire": {
        const delays = this.lockDelaysOf(cmd.leases);
        const keys: Uint8Array[] = [];
        for (const l of cmd.leases) {
          const r = this.leases.revoke(l.id, { grantIndex: l.grantIndex });
          if (!r.ok) continue;
          fx.leaseRevokes.push(l.id);
          for (const k of r.keys) keys.push(k);
        }
        const deleted =
          delays.length === 0
            ? this.deleteLeaseKeys(keys, fx)
            : this.expireWithLockDelays(keys, delays, index, fx);
        return { kind: "leaseExpire", header: this.header(), revoked: fx.leaseRevokes.length, deleted };
      }
      case "acquire":
        return this.acquire(cmd, index, fx);
      case "release": {
        const claim = this.claimOfLease(cmd.resource, cmd.id);
        if (claim === undefined) return this.failed(cmd.type, "leaseNotFound");
        if (claim.holder !== cmd.holder) return this.failed(cmd.type, "notHolder");
        const r = this.leases.revoke(cmd.id);
        assert(r.ok, "machine: the lease of a claim is not in the table");
        fx.leaseRevokes.push(cmd.id);
        const deleted = this.deleteLeaseKeys(r.keys, fx);
        return { kind: "release", header: this.header(), deleted };
      }
      case "requestRelease":
        return this.requestRelease(cmd, index, fx);
      case "forceRevoke": {
        const refuse = (outcome: "noClaim" | "notRequested" | "beforeDeadline"): CommandResult => ({
          kind: "forceRevoke",
          header: this.header(),
          outcome,
          deleted: 0,
        });
        if (this.claimOfLease(cmd.resource, cmd.id) === undefined) return refuse("noClaim");
        if (this.currentKv(releaseRequestKey(cmd.resource, cmd.id)) === undefined)
          return refuse("notRequested");
        if (this.currentKv(releaseDeadlineKey(cmd.resource, cmd.id)) !== undefined)
          return refuse("beforeDeadline");
        const r = this.leases.revoke(cmd.id);
        assert(r.ok, "machine: the lease of a claim is not in the table");
        fx.leaseRevokes.push(cmd.id);
        const deleted = this.deleteLeaseKeys(r.keys, fx);
        return { kind: "forceRevoke", header: this.header(), outcome: "revoked", deleted };
      }
      case "fencedPut": {
        const holder = this.resourceHolder(cmd.resource);
        if (holder === undefined || holder.token !== cmd.token)
          return { kind: "fencedPut", header: this.header(), ok: false, holder };
        const r = this.mvcc.put(cmd.request, this.writeOptions);
        if (!r.ok) return this.failed(cmd.type, r.error);
        this.leases.applyLeaseChanges(r.leaseChanges);
        fx.events = r.events;
        return { kind: "fencedPut", header: { revision: r.revision }, ok: true, holder, prevKv: r.prevKv };
      }
      case "counterAdd":
        return this.counterAdd(cmd, fx);
      case "counterCas":
        return this.counterCas(cmd, fx);
      case "semaphoreAcquire":
        return this.semaphoreAcquire(cmd, index, fx);
      case "semaphoreRelease": {
        const claim = this.semaphoreClaimOfLease(cmd.semaphore, cmd.id);
        if (claim === undefined) return this.failed(cmd.type, "leaseNotFound");
        if (claim.holder !== cmd.holder) return this.failed(cmd.type, "notHolder");
        const r = this.leases.revoke(cmd.id);
        assert(r.ok, "machine: the lease of a semaphore claim is not in the table");
        fx.leaseRevokes.push(cmd.id);
        const deleted = this.deleteLeaseKeys(r.keys, fx);
        return { kind: "semaphoreRelease", header: this.header(), deleted };
      }
      case "leaseCheckpoint": {
        let applied = 0;
        let ignored = 0;
        let rejected = 0;
        for (const cp of cmd.checkpoints) {
          const info = this.leases.get(cp.id);
          if (info === undefined || info.grantIndex !== cp.grantIndex) {
            ignored++;
          } else if (cp.remainingTtlSeconds > info.ttlSeconds) {
            rejected++;
            continue;
          } else {
            const r = this.leases.checkpoint(cp.id, cp.remainingTtlSeconds, { grantIndex: cp.grantIndex });
            assert(r.ok, "machine: checkpoint of a lease just found");
            applied++;
          }
          fx.leaseCheckpoints.push({
            id: cp.id,
            grantIndex: cp.grantIndex,
            remainingTtlSeconds: cp.remainingTtlSeconds,
          });
        }
        return { kind: "leaseCheckpoint", header: this.header(), applied, ignored, rejected };
      }
      case "memberPublish":
        if (!this.members.publish(memberId(cmd.member), cmd.name, cmd.clientUrls))
          return this.failed(cmd.type, "memberNotFound");
        return { kind: "member", header: this.header() };
      case "memberUpdate":
        if (!this.members.update(memberId(cmd.member), cmd.peerUrls))
          return this.failed(cmd.type, "memberNotFound");
        return { kind: "member", header: this.header() };
      case "authEnable":
      case "authDisable":
      case "authenticate":
      case "authUserAdd":
      case "authUserDelete":
      case "authUserChangePassword":
      case "authUserGrantRole":
      case "authUserRevokeRole":
      case "authRoleAdd":
      case "authRoleDelete":
      case "authRoleGrantPermission":
      case "authRoleRevokePermission":
        return this.runAuth(cmd, index);
      case "alarm": {
        const changed =
          cmd.action === "activate"
            ? this.alarms.activate(cmd.member, cmd.alarm).alarm
            : this.alarms.deactivate(cmd.member, cmd.alarm);
        return { kind: "alarm", header: this.header(), alarms: changed === undefined ? [] : [changed] };
      }
      default:
        return assertNever(cmd, "command");
    }
  }

  private runAuth(cmd: AuthCommand, index: number): CommandResult {
    const r = this.auth.apply(cmd, index);
    if (!r.ok) return this.failed(cmd.type, r.error);
    return r.token === undefined
      ? { kind: "auth", header: this.header() }
      : { kind: "auth", header: this.header(), token: r.token };
  }

  /** Why auth refuses `cmd` for the caller it carries (see the file header), if it does. */
  private authRefusal(cmd: Command): AuthError | undefined {
    const auth = this.auth;
    if (!auth.isEnabled()) return undefined;
    const noKeys: LeaseKeys = () => [];
    const leaseKeys: LeaseKeys = (id) => this.leases.keysOf(id) ?? [];
    switch (cmd.type) {
      case "put":
        return auth.checkAccess(
          cmd.auth,
          putChecks(cmd.request, auth.isAdmin(cmd.auth) ? noKeys : leaseKeys),
        );
      case "deleteRange":
        return auth.checkAccess(cmd.auth, deleteChecks(cmd.request));
      case "txn":
        return auth.checkAccess(
          cmd.auth,
          txnChecks(cmd.request, auth.isAdmin(cmd.auth) ? noKeys : leaseKeys),
        );
      case "compact":
        return auth.checkAdmin(cmd.auth);
      case "leaseGrant":
        return auth.checkAccess(cmd.auth, []);
      case "leaseRevoke":
        // With grantIndex: the leader's expiry of a lease, not a client's request.
        if (cmd.grantIndex !== undefined) return undefined;
        if (auth.isAdmin(cmd.auth)) return undefined;
        return auth.checkAccess(cmd.auth, leaseWriteChecks(leaseKeys(cmd.id)));
      case "acquire":
        return auth.checkAccess(
          cmd.auth,
          putChecks({ key: resourceKey(cmd.resource, cmd.id), value: EMPTY }, noKeys),
        );
      case "release":
        if (auth.isAdmin(cmd.auth)) return undefined;
        return auth.checkAccess(cmd.auth, leaseWriteChecks(leaseKeys(cmd.id)));
      case "fencedPut":
        return auth.checkAccess(
          cmd.auth,
          putChecks(cmd.request, auth.isAdmin(cmd.auth) ? noKeys : leaseKeys),
        );
      case "requestRelease":
        // Writes the request next to the claim: write access to the resource's claims.
        return auth.checkAccess(cmd.auth, [
          {
            key: resourcePrefix(cmd.resource),
            rangeEnd: prefixEnd(resourcePrefix(cmd.resource)),
            type: "write",
          },
        ]);
      case "forceRevoke":
        if (auth.isAdmin(cmd.auth)) return undefined;
        return auth.checkAccess(cmd.auth, leaseWriteChecks(leaseKeys(cmd.id)));
      case "counterAdd":
      case "counterCas":
        // Reads the value (the answer carries it) and writes it.
        return auth.checkAccess(
          cmd.auth,
          putChecks({ key: counterKey(cmd.counter), value: EMPTY, prevKv: true }, noKeys),
        );
      case "semaphoreAcquire":
        return auth.checkAccess(
          cmd.auth,
          putChecks({ key: semaphoreKey(cmd.semaphore, cmd.id), value: EMPTY }, noKeys),
        );
      case "semaphoreRelease":
        if (auth.isAdmin(cmd.auth)) return undefined;
        return auth.checkAccess(cmd.auth, leaseWriteChecks(leaseKeys(cmd.id)));
      case "authenticate":
        return undefined;
      case "authEnable":
      case "authDisable":
      case "authUserAdd":
      case "authUserDelete":
      case "authUserChangePassword":
      case "authUserGrantRole":
      case "authUserRevokeRole":
      case "authRoleAdd":
      case "authRoleDelete":
      case "authRoleGrantPermission":
      case "authRoleRevokePermission":
        return auth.checkAdmin(cmd.auth);
      case "leaseCheckpoint":
      case "leaseExpire":
      case "memberPublish":
      case "memberUpdate":
      case "alarm":
        return undefined;
      default:
        return assertNever(cmd, "command");
    }
  }

  /** Why an active alarm refuses `cmd` (see the file header), if it does. */
  private alarmRefusal(cmd: Command): "noSpace" | "corrupt" | undefined {
    if (this.alarms.size === 0) return undefined;
    if (this.alarms.has("corrupt")) {
      switch (cmd.type) {
        case "put":
        case "deleteRange":
        case "txn":
        case "compact":
        case "leaseGrant":
        case "acquire":
        case "release":
        case "fencedPut":
        case "requestRelease":
        case "forceRevoke":
        case "counterAdd":
        case "counterCas":
        case "semaphoreAcquire":
        case "semaphoreRelease":
          return "corrupt";
        case "leaseRevoke":
          return cmd.grantIndex === undefined ? "corrupt" : undefined;
        default:
          return undefined;
      }
    }
    if (this.alarms.has("nospace") && quotaCostBytes(cmd) > 0) return "noSpace";
    return undefined;
  }

  /** leasehold.v1 Acquire (resources.ts): one lease and one claim key, in one revision, or nothing. */
  private acquire(cmd: Extract<Command, { type: "acquire" }>, index: number, fx: Effects): CommandResult {
    const claims = this.resourceClaims(cmd.resource);
    const lockDelay = this.lockDelay(cmd.resource);
    // In a lock-delay nobody holds, and every claim waits behind the delay (counted as one place).
    const holder = lockDelay === undefined ? claims[0] : undefined;
    const ahead = claims.length + (lockDelay === undefined ? 0 : 1);
    const refuse = (): CommandResult => ({
      kind: "acquire",
      header: this.header(),
      granted: false,
      id: cmd.id,
      ttlSeconds: 0,
      holder,
      position: ahead,
      lockDelay,
    });
    if (ahead > 0 && !cmd.wait) return refuse();
    const g = this.leases.grant(cmd.id, cmd.ttlSeconds, { index });
    if (!g.ok) return this.failed(cmd.type, g.reason === "exists" ? "leaseExists" : "ttlTooLarge");
    const puts: RequestOp[] = [
      {
        type: "put",
        request: { key: resourceKey(cmd.resource, g.id), value: holderValue(cmd.holder), lease: g.id },
      },
    ];
    const delay = cmd.lockDelaySeconds ?? 0;
    if (delay > 0)
      puts.push({
        type: "put",
        request: {
          key: lockDelayConfigKey(cmd.resource, g.id),
          value: encoder.encode(String(delay)),
          lease: g.id,
        },
      });
    const r = this.mvcc.txn({ success: puts }, this.writeOptions);
    assert(r.ok, "machine: the claim of a just granted lease was refused");
    this.leases.applyLeaseChanges(r.leaseChanges);
    fx.events = r.events;
    const info = this.leases.get(g.id);
    assert(info !== undefined, "machine: granted lease not in the table");
    fx.leaseGrants.push(info);
    const mine: ResourceClaim = {
      resource: cmd.resource,
      holder: cmd.holder,
      lease: g.id,
      token: r.revision,
    };
    return {
      kind: "acquire",
      header: { revision: r.revision },
      granted: true,
      id: g.id,
      ttlSeconds: g.ttlSeconds,
      holder: ahead === 0 ? mine : holder,
      position: ahead,
      lockDelay,
    };
  }

  /** The lock-delay `resource` is in, if any: whose expiry started it, and the lease that ends it. */
  lockDelay(resource: string): LockDelay | undefined {
    const kv = this.currentKv(lockDelayKey(resource));
    if (kv === undefined) return undefined;
    return { holder: lenientDecoder.decode(kv.value), lease: kv.lease };
  }

  /**
   * The lock-delays the expiry of `leases` starts (resources.ts "Lock-delay"): for each lease that
   * holds a resource and whose claim asked for one. Read before the expiry deletes the claims.
   */
  private lockDelaysOf(leases: readonly { id: LeaseId; grantIndex: number }[]): PendingDelay[] {
    const out: PendingDelay[] = [];
    for (const l of leases) {
      const info = this.leases.get(l.id);
      if (info === undefined || info.grantIndex !== l.grantIndex) continue;
      for (const c of this.claimsOfLease(l.id)) {
        if (this.resourceHolder(c.resource)?.lease !== l.id) continue;
        const kv = this.currentKv(lockDelayConfigKey(c.resource, l.id));
        const seconds = kv === undefined ? 0 : Number(lenientDecoder.decode(kv.value));
        if (Number.isSafeInteger(seconds) && seconds > 0)
          out.push({ resource: c.resource, holder: c.holder, seconds });
      }
    }
    return out;
  }

  /**
   * Deletes the expired leases' keys and starts `delays` (one lease and one key each) in ONE
   * revision: the watch hub and every reader see one step, as for any expiry.
   */
  private expireWithLockDelays(
    keys: readonly Uint8Array[],
    delays: readonly PendingDelay[],
    index: number,
    fx: Effects,
  ): number {
    const puts: PutRequest[] = [];
    for (const d of delays) {
      const g = this.leases.grant(NO_LEASE, d.seconds, { index });
      assert(g.ok, "machine: a lock-delay lease was refused");
      const info = this.leases.get(g.id);
      assert(info !== undefined, "machine: granted lease not in the table");
      fx.leaseGrants.push(info);
      puts.push({ key: lockDelayKey(d.resource), value: encoder.encode(d.holder), lease: g.id });
    }
    const d = this.mvcc.deleteKeysThenPut(keys, puts, this.writeOptions);
    assert(d.deleted === keys.length, `machine: ${keys.length} lease keys, ${d.deleted} in the store`);
    this.leases.applyLeaseChanges(d.leaseChanges);
    fx.events = d.events;
    return d.deleted;
  }

  /** leasehold.v1 RequestRelease (resources.ts "Release requests"): two keys in one revision, or nothing. */
  private requestRelease(
    cmd: Extract<Command, { type: "requestRelease" }>,
    index: number,
    fx: Effects,
  ): CommandResult {
    const holder = this.resourceHolder(cmd.resource);
    if (holder === undefined)
      return { kind: "requestRelease", header: this.header(), holder, deadlineLease: NO_LEASE };
    const g = this.leases.grant(cmd.id, cmd.deadlineSeconds, { index });
    if (!g.ok) return this.failed(cmd.type, g.reason === "exists" ? "leaseExists" : "ttlTooLarge");
    const value = encoder.encode(
      JSON.stringify({ requester: cmd.requester, reason: cmd.reason, deadlineSeconds: g.ttlSeconds }),
    );
    const r = this.mvcc.txn(
      {
        success: [
          {
            type: "put",
            request: { key: releaseRequestKey(cmd.resource, holder.lease), value, lease: holder.lease },
          },
          {
            type: "put",
            request: { key: releaseDeadlineKey(cmd.resource, holder.lease), value: EMPTY, lease: g.id },
          },
        ],
      },
      this.writeOptions,
    );
    assert(r.ok, "machine: the keys of a release request were refused");
    this.leases.applyLeaseChanges(r.leaseChanges);
    fx.events = r.events;
    const info = this.leases.get(g.id);
    assert(info !== undefined, "machine: granted lease not in the table");
    fx.leaseGrants.push(info);
    return { kind: "requestRelease", header: { revision: r.revision }, holder, deadlineLease: g.id };
  }

  /** The release request on the holding of lease `id` on `resource`, if any. */
  releaseRequest(
    resource: string,
    id: LeaseId,
  ): { request: ReleaseRequest; deadlinePassed: boolean } | undefined {
    const kv = this.currentKv(releaseRequestKey(resource, id));
    const request = kv === undefined ? undefined : releaseRequestOf(kv);
    if (request === undefined) return undefined;
    return { request, deadlinePassed: this.currentKv(releaseDeadlineKey(resource, id)) === undefined };
  }

  /** The claims on `resource`, oldest (the holder) first; keys under its prefix that are not claims are skipped. */
  resourceClaims(resource: string): ResourceClaim[] {
    return this.claimsUnder(resourcePrefix(resource), (kv) => {
      const c = claimOf(kv);
      return c?.resource === resource ? c : undefined;
    });
  }

  /** The keys under `prefix` that `parse` takes for claims, oldest (least create revision) first. */
  private claimsUnder<C>(prefix: Uint8Array, parse: (kv: KeyValue) => C | undefined): C[] {
    const r = this.mvcc.range({
      key: prefix,
      rangeEnd: prefixEnd(prefix),
      sortOrder: "ascend",
      sortTarget: "create",
    });
    assert(r.ok, "machine: a range of the current revision failed");
    const out: C[] = [];
    for (const kv of r.kvs) {
      const c = parse(kv);
      if (c !== undefined) out.push(c);
    }
    return out;
  }

  /** Who holds `resource` now, if anyone. */
  resourceHolder(resource: string): ResourceClaim | undefined {
    if (this.lockDelay(resource) !== undefined) return undefined; // in a lock-delay nobody holds
    return this.resourceClaims(resource)[0];
  }

  /** The claim on `resource` under lease `id`, if it exists. */
  claimOfLease(resource: string, id: LeaseId): ResourceClaim | undefined {
    const r = this.mvcc.range({ key: resourceKey(resource, id) });
    assert(r.ok, "machine: a range of the current revision failed");
    const kv = r.kvs[0];
    return kv === undefined ? undefined : claimOf(kv);
  }

  /**
   * Whether lease `id` may hold a resource claim: a key under the claim
   * prefix among at most CLAIM_LEASE_KEYS_MAX keys. No reads, no copies: for
   * every keepalive the leader answers (Member.leaseKept).
   */
  mayHoldClaim(id: LeaseId): boolean {
    const n = this.leases.keyCount(id);
    return (
      n > 0 && n <= CLAIM_LEASE_KEYS_MAX && this.leases.someKey(id, (k) => k.startsWith(RESOURCE_KEY_PREFIX))
    );
  }

  /**
   * The resource claim of lease `id`, looked up cheaply enough for every
   * keepalive: a claim's lease carries its claim key and at most a few more
   * (lock-delay config, release requests), so a lease with more than
   * CLAIM_LEASE_KEYS_MAX keys is taken to hold no claim without looking.
   */
  claimOfRenewedLease(id: LeaseId): ResourceClaim | undefined {
    const n = this.leases.keyCount(id);
    if (n === 0 || n > CLAIM_LEASE_KEYS_MAX) return undefined;
    for (const key of this.leases.keysOf(id) ?? []) {
      if (!underClaimPrefix(key)) continue;
      const r = this.mvcc.range({ key });
      const c = r.ok && r.kvs[0] !== undefined ? claimOf(r.kvs[0]) : undefined;
      if (c !== undefined) return c;
    }
    return undefined;
  }

  /** The resource claims made under lease `id` (one, unless the etcd API copied the layout). */
  claimsOfLease(id: LeaseId): ResourceClaim[] {
    const out: ResourceClaim[] = [];
    for (const key of this.leases.keysOf(id) ?? []) {
      const r = this.mvcc.range({ key });
      assert(r.ok, "machine: a range of the current revision failed");
      const c = r.kvs[0] === undefined ? undefined : claimOf(r.kvs[0]);
      if (c !== undefined) out.push(c);
    }
    return out;
  }

  /**
   * The holder of every resource whose name starts with `namePrefix`, in name order (each
   * resource's claims are contiguous in key order: a name never contains NUL).
   */
  resourceHolders(namePrefix: string): ResourceClaim[] {
    const prefix = resourceNamesPrefix(namePrefix);
    const r = this.mvcc.range({ key: prefix, rangeEnd: prefixEnd(prefix) });
    assert(r.ok, "machine: a range of the current revision failed");
    const out: ResourceClaim[] = [];
    for (const kv of r.kvs) {
      const c = claimOf(kv);
      if (c === undefined) continue;
      const last = out[out.length - 1];
      if (last === undefined || last.resource !== c.resource) out.push(c);
      else if (c.token < last.token) out[out.length - 1] = c;
    }
    return out.filter((c) => this.lockDelay(c.resource) === undefined); // in a lock-delay nobody holds
  }

  // -- counters (counters.ts) ---------------------------------------------------

  /** Counter `name` as stored now (0 when never written). */
  counterValue(name: string): CounterValue {
    return counterValueOf(this.currentKv(counterKey(name)));
  }

  private counterAdd(cmd: Extract<Command, { type: "counterAdd" }>, fx: Effects): CommandResult {
    const key = counterKey(cmd.counter);
    const kv = this.currentKv(key);
    const now = counterValueOf(kv);
    if (!now.ok)
      return {
        kind: "counterAdd",
        header: this.header(),
        outcome: "notNumber",
        value: 0n,
        stored: now.stored,
      };
    const sum = addInt64(now.value, cmd.delta);
    if (sum === undefined)
      return { kind: "counterAdd", header: this.header(), outcome: "overflow", value: now.value };
    const revision = this.putCounter(key, kv, sum, fx);
    return { kind: "counterAdd", header: { revision }, outcome: "added", value: sum };
  }

  private counterCas(cmd: Extract<Command, { type: "counterCas" }>, fx: Effects): CommandResult {
    const key = counterKey(cmd.counter);
    const kv = this.currentKv(key);
    const now = counterValueOf(kv);
    if (!now.ok)
      return {
        kind: "counterCas",
        header: this.header(),
        outcome: "notNumber",
        value: 0n,
        stored: now.stored,
      };
    if (now.value !== cmd.expected)
      return { kind: "counterCas", header: this.header(), outcome: "notSet", value: now.value };
    const revision = this.putCounter(key, kv, cmd.value, fx);
    return { kind: "counterCas", header: { revision }, outcome: "set", value: cmd.value };
  }

  /** Writes `value` to a counter key, keeping the lease the etcd API may have attached; the new revision. */
  private putCounter(key: Uint8Array, kv: KeyValue | undefined, value: bigint, fx: Effects): Revision {
    const lease = kv === undefined || kv.lease === 0n ? undefined : kv.lease;
    const r = this.mvcc.put(
      lease === undefined ? { key, value: counterText(value) } : { key, value: counterText(value), lease },
      this.writeOptions,
    );
    assert(r.ok, "machine: a counter put was refused");
    this.leases.applyLeaseChanges(r.leaseChanges);
    fx.events = r.events;
    return r.revision;
  }

  /** The current version of `key`, if any. */
  private currentKv(key: Uint8Array): KeyValue | undefined {
    const r = this.mvcc.range({ key });
    assert(r.ok, "machine: a range of the current revision failed");
    return r.kvs[0];
  }

  // -- semaphores (semaphores.ts) ---------------------------------------------

  /** leasehold.v1 Semaphores.Acquire: one lease and one claim key, in one revision, or nothing. */
  private semaphoreAcquire(
    cmd: Extract<Command, { type: "semaphoreAcquire" }>,
    index: number,
    fx: Effects,
  ): CommandResult {
    const claims = this.semaphoreClaims(cmd.semaphore);
    const view = semaphoreView(claims);
    const refuse = (outcome: "full" | "permitsMismatch"): CommandResult => ({
      kind: "semaphoreAcquire",
      header: this.header(),
      outcome,
      id: cmd.id,
      ttlSeconds: 0,
      permits: view.permits,
      holders: view.holders.length,
      position: claims.length,
    });
    if (claims.length > 0 && view.permits !== cmd.permits) return refuse("permitsMismatch");
    if (claims.length >= cmd.permits && !cmd.wait) return refuse("full");
    const g = this.leases.grant(cmd.id, cmd.ttlSeconds, { index });
    if (!g.ok) return this.failed(cmd.type, g.reason === "exists" ? "leaseExists" : "ttlTooLarge");
    const r = this.mvcc.put(
      {
        key: semaphoreKey(cmd.semaphore, g.id),
        value: semaphoreValue(cmd.permits, cmd.holder),
        lease: g.id,
      },
      this.writeOptions,
    );
    assert(r.ok, "machine: the semaphore claim of a just granted lease was refused");
    this.leases.applyLeaseChanges(r.leaseChanges);
    fx.events = r.events;
    const info = this.leases.get(g.id);
    assert(info !== undefined, "machine: granted lease not in the table");
    fx.leaseGrants.push(info);
    return {
      kind: "semaphoreAcquire",
      header: { revision: r.revision },
      outcome: "granted",
      id: g.id,
      ttlSeconds: g.ttlSeconds,
      permits: cmd.permits,
      holders: Math.min(claims.length + 1, cmd.permits),
      position: claims.length,
    };
  }

  /** The claims on `semaphore`, oldest first; keys under its prefix that are not claims are skipped. */
  semaphoreClaims(semaphore: string): SemaphoreClaim[] {
    return this.claimsUnder(semaphorePrefix(semaphore), (kv) => {
      const c = semaphoreClaimOf(kv);
      return c?.semaphore === semaphore ? c : undefined;
    });
  }

  /** The claim on `semaphore` under lease `id`, if it exists. */
  semaphoreClaimOfLease(semaphore: string, id: LeaseId): SemaphoreClaim | undefined {
    const kv = this.currentKv(semaphoreKey(semaphore, id));
    return kv === undefined ? undefined : semaphoreClaimOf(kv);
  }

  /** The semaphore claims made under lease `id` (one, unless the etcd API copied the layout). */
  semaphoreClaimsOfLease(id: LeaseId): SemaphoreClaim[] {
    const out: SemaphoreClaim[] = [];
    for (const key of this.leases.keysOf(id) ?? []) {
      const kv = this.currentKv(key);
      const c = kv === undefined ? undefined : semaphoreClaimOf(kv);
      if (c !== undefined) out.push(c);
    }
    return out;
  }

  /** Deletes the keys of revoked leases in one revision; every one must exist (the table mirrors the store). */
  private deleteLeaseKeys(keys: readonly Uint8Array[], fx: Effects): number {
    const d = this.mvcc.deleteKeys(keys);
    assert(d.deleted === keys.length, `machine: ${keys.length} lease keys, ${d.deleted} in the store`);
    this.leases.applyLeaseChanges(d.leaseChanges);
    fx.events = d.events;
    return d.deleted;
  }
}

/** UTF-8 JSON that a snapshot holds (checked at the boundary: anything else is a bug). */
function parseJson<T>(bytes: Uint8Array): T {
  try {
    return JSON.parse(decoder.decode(bytes)) as T;
  } catch (e) {
    assert(false, `machine snapshot: not UTF-8 JSON (${String(e)})`);
  }
}

const EMPTY = new Uint8Array(0);

/** More keys than this on a lease: not a claim's lease (claimOfRenewedLease). */
const CLAIM_LEASE_KEYS_MAX = 8;

function leaseOptions(options: StateMachineOptions): { minTtlSeconds?: number } {
  return options.minLeaseTtlSeconds === undefined ? {} : { minTtlSeconds: options.minLeaseTtlSeconds };
}

function sessionOf(cmd: Command): ClientSession | undefined {
  return "session" in cmd ? cmd.session : undefined;
}

// ---------------------------------------------------------------------------
// Stored results in snapshots: plain data with bytes and bigints tagged.

/**
 * JSON-ready form of a result: Uint8Array -> {"$b": base64}, bigint ->
 * {"$i": decimal}, undefined object fields dropped, key order kept (so the
 * text is canonical for objects built the same way).
 */
function toTagged(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $b: bytesToBase64(v) };
  if (typeof v === "bigint") return { $i: v.toString() };
  if (Array.isArray(v)) return v.map(toTagged);
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      assert(!k.startsWith("$"), `machine snapshot: field ${k} clashes with a tag`);
      if (x !== undefined) out[k] = toTagged(x);
    }
    return out;
  }
  assert(
    typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v)),
    `machine snapshot: cannot store ${typeof v}`,
  );
  return v;
}

function fromTagged(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromTagged);
  if (typeof v === "object" && v !== null) {
    const o = v as Record<string, unknown>;
    if (typeof o.$b === "string") {
      const b = base64ToBytes(o.$b);
      assert(b !== undefined, "machine snapshot: bad base64");
      return b;
    }
    if (typeof o.$i === "string") return leaseId(BigInt(o.$i));
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) out[k] = fromTagged(x);
    return out;
  }
  return v;
}
