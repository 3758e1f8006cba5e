/**
 * etcdserverpb.Maintenance (etcd 3.4's etcdserver/api/v3rpc/maintenance.go)
 * and the space quota in front of writes (v3rpc/quota.go):
 *
 * - Status: this member's view; `dbSize` and `dbSizeInUse` are the size the
 *   quota counts (StateMachine.sizeBytes, given by the embedder as
 *   `dbSize`); `errors` lists "etcdserver: no leader" when no leader is
 *   known and every active alarm ("memberID:<id> alarm:NOSPACE ", the
 *   protobuf text etcd prints).
 * - Alarm: GET lists the active alarms (a linearizable read; etcd sends GET
 *   through Raft, which answers the same); ACTIVATE and DEACTIVATE are Raft
 *   commands, answered with the alarm changed. Like etcd's, the answers
 *   carry no header (nor do Defragment's and MoveLeader's). An alarm type
 *   etcd does not act on (NONE, or an unknown number) is answered with no
 *   alarm and nothing is proposed (etcd would store it and act on nothing).
 * - Hash: a CRC-32C of this member's whole replicated state except its
 *   applied index; HashKV(revision): a CRC-32C of the key space up to
 *   `revision` (0: current) with the compacted revision, answering Compacted
 *   (revision > 0 and <= the compacted one) or FutureRev as etcd. Replicas
 *   that applied the same log give the same numbers; the numbers are not
 *   etcd's (those hash etcd's bbolt pages). Both read local state.
 * - Snapshot: this member's state in the format of db-snapshot.ts, in 32 KiB
 *   chunks (`remaining_bytes` counts what follows, as etcd's), then the
 *   SHA-256 of it all in a last chunk with `remaining_bytes` 0, as etcd
 *   appends it; `etcdctl snapshot save` keeps the stream as a file, and
 *   `leasehold snapshot restore` reads it. The state is taken at once, so it
 *   is one consistent point of the log. A learner refuses it (etcd refuses
 *   every stream on a learner).
 * - Defragment: answers success; there is no file to compact, and
 *   compaction gives the space back at once (the quota's size shrinks).
 * - MoveLeader(targetID): on the leader only ("etcdserver: not leader"); the
 *   target must be a voting member ("etcdserver: bad leader transferee");
 *   Raft's leadership transfer (thesis §3.10), then the answer once the
 *   target leads, or "etcdserver: request timed out, leader transfer took
 *   too long" when Raft gave the transfer up, another member won, or
 *   MOVE_LEADER_WAIT_MS passed (etcd waits for the client's deadline).
 *
 * The space quota (`SpaceQuota`, etcd's quotaAlarmer): before a put, a txn
 * with puts or a lease grant, if the size plus the request's cost (alarm.ts
 * quotaCostBytes) reaches --quota-backend-bytes, this member raises NOSPACE
 * through Raft and the request fails with "etcdserver: mvcc: database space
 * exceeded". While NOSPACE is active every replica refuses such writes at
 * apply (machine.ts); reads, deletes, compaction and `alarm disarm` work.
 */

import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { MemberId } from "../raft/index.ts";
import { memberId, NO_MEMBER } from "../raft/index.ts";
import { dbSnapshotChecksum, encodeDbSnapshot } from "../server/db-snapshot.ts";
import type { Alarm, AlarmType, Command } from "../state/index.ts";
import { quotaCostBytes, revision } from "../state/index.ts";
import type { ApiHost, CallInfo } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import { type Uint64Bits, uint64FromBits, writeResultToWire } from "./convert.ts";
import { etcdServiceError } from "./errors.ts";
import type { WireMessage } from "./proto.ts";

type W = WireMessage;

/** The API version Status reports: clients gate features on it. */
export const REPORTED_VERSION = "3.4.0";
/** etcd's snapshotSendBufferSize: the blob of every Snapshot message but the last two. */
export const SNAPSHOT_CHUNK_BYTES = 32 * 1024;
/** How long MoveLeader waits for the target to lead (etcd: the client's deadline; its default request timeout). */
export const MOVE_LEADER_WAIT_MS = 7_000;
/** How often MoveLeader looks whether the target leads (etcd polls every tick). */
const MOVE_LEADER_POLL_MS = 10;

/** etcd AlarmType numbers. */
const ALARM_NUMBER: Readonly<Record<AlarmType, number>> = { nospace: 1, corrupt: 2 };
const ALARM_NAME: Readonly<Record<AlarmType, string>> = { nospace: "NOSPACE", corrupt: "CORRUPT" };
/** etcd AlarmRequest.AlarmAction numbers. */
const ACTION_GET = 0;
const ACTION_ACTIVATE = 1;
const ACTION_DEACTIVATE = 2;

export interface MaintenanceOptions {
  /** Status's db size (serve.ts: StateMachine.sizeBytes, what the quota counts). */
  readonly dbSize: () => number;
}

export function maintenanceService(host: ApiHost, options: MaintenanceOptions): UntypedServiceImplementation {
  return {
    Alarm: host.unary((w) => alarm(host, w)),
    Status: host.unary(
      async () => status(host, options),
      () => true,
    ),
    Defragment: host.unary(async () => ({})),
    Hash: host.unary(async () => ({ header: host.header(), hash: host.member.machine.stateHash() })),
    HashKV: host.unary(async (w) => hashKv(host, w)),
    Snapshot: (call: ServerWritableStream<W, W>) => snapshot(host, call),
    MoveLeader: host.unary((w, call) => moveLeader(host, w, call)),
  };
}

function status(host: ApiHost, options: MaintenanceOptions): W {
  const member = host.member;
  const raft = member.raft;
  const errors: string[] = [];
  if (raft.lead === NO_MEMBER) errors.push("etcdserver: no leader");
  for (const a of member.machine.alarmList()) errors.push(alarmText(a));
  return {
    header: host.header(),
    version: REPORTED_VERSION,
    dbSize: String(options.dbSize()),
    leader: String(raft.lead as MemberId),
    raftIndex: String(raft.log.committed),
    raftTerm: String(raft.term),
    raftAppliedIndex: String(raft.log.applied),
    errors,
    dbSizeInUse: String(options.dbSize()),
    isLearner: raft.conf.learners.includes(member.id),
  };
}

/** An AlarmMember as gogo-protobuf's String() prints it (etcd's Status errors, etcdctl's alarm list). */
export function alarmText(a: Alarm): string {
  return `memberID:${a.member} alarm:${ALARM_NAME[a.alarm]} `;
}

function alarmToWire(a: Alarm): W {
  return { memberID: a.member.toString(), alarm: ALARM_NUMBER[a.alarm] };
}

/** The alarm type of an AlarmRequest: undefined for NONE, "unknown" for a number etcd has no type for. */
function alarmTypeFromWire(n: number): AlarmType | undefined | "unknown" {
  if (n === 0) return undefined;
  const t = (Object.keys(ALARM_NUMBER) as AlarmType[]).find((k) => ALARM_NUMBER[k] === n);
  return t ?? "unknown";
}

async function alarm(host: ApiHost, w: W): Promise<W> {
  const action = Number(w.action ?? 0);
  const type = alarmTypeFromWire(Number(w.alarm ?? 0));
  const member = host.member;
  if (action === ACTION_GET) {
    const list = type === "unknown" ? [] : await member.read(true, (m) => m.alarmList(type));
    return { alarms: list.map(alarmToWire) };
  }
  if (action !== ACTION_ACTIVATE && action !== ACTION_DEACTIVATE) return {};
  if (type === undefined || type === "unknown") return { alarms: [] };
  const out = await member.write({
    type: "alarm",
    action: action === ACTION_ACTIVATE ? "activate" : "deactivate",
    member: BigInt(String(w.memberID ?? "0")),
    alarm: type,
  });
  if (out.result.kind !== "alarm") {
    const answer = writeResultToWire(out.result, (rev) => host.header(rev));
    throw new ErrorAnswer(typeof answer === "string" ? answer : "NotCapable");
  }
  return { alarms: out.result.alarms.map(alarmToWire) };
}

async function hashKv(host: ApiHost, w: W): Promise<W> {
  const asked = BigInt(String(w.revision ?? "0"));
  // Beyond a safe integer is beyond any revision; below, etcd hashes nothing (as a negative one does).
  if (asked > BigInt(Number.MAX_SAFE_INTEGER)) throw new ErrorAnswer("FutureRev");
  const rev = asked < BigInt(Number.MIN_SAFE_INTEGER) ? -1 : Number(asked);
  const r = host.member.machine.hashKv(revision(rev));
  if (!r.ok) throw new ErrorAnswer(r.error === "compacted" ? "Compacted" : "FutureRev");
  return {
    header: host.header(r.currentRevision),
    hash: r.hash,
    compact_revision: String(r.compactRevision),
  };
}

/** Streams the member's state (see the header); honours flow control and stops when the client goes. */
function snapshot(host: ApiHost, call: ServerWritableStream<W, W>): void {
  call.on("error", () => {});
  const member = host.member;
  if (member.raft.conf.learners.includes(member.id)) {
    call.emit("error", etcdServiceError("NotSupportedForLearner"));
    return;
  }
  const machine = member.machine;
  const body = encodeDbSnapshot(
    {
      memberId: member.id.toString(16),
      clusterId: uint64FromBits(host.header().cluster_id as Uint64Bits).toString(),
      revision: machine.currentRevision(),
      compactRevision: machine.compactedRevision(),
      appliedIndex: machine.appliedIndex(),
    },
    machine.backup(),
  );
  const checksum = dbSnapshotChecksum(body);
  host.log("info", `sending a snapshot of ${body.length} bytes (revision ${machine.currentRevision()})`);
  let sent = 0;
  const pump = (): void => {
    while (!call.cancelled && !call.destroyed) {
      if (sent >= body.length) {
        call.write({ remaining_bytes: "0", blob: Buffer.from(checksum) });
        call.end();
        return;
      }
      const n = Math.min(SNAPSHOT_CHUNK_BYTES, body.length - sent);
      const blob = Buffer.from(body.buffer, body.byteOffset + sent, n);
      sent += n;
      if (!call.write({ remaining_bytes: String(body.length - sent), blob })) {
        call.once("drain", pump);
        return;
      }
    }
  };
  pump();
}

async function moveLeader(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const member = host.member;
  const raft = member.raft;
  if (raft.lead !== member.id) throw new ErrorAnswer("NotLeader");
  const asked = BigInt(String(w.targetID ?? "0"));
  const target = asked > 0n && asked <= BigInt(Number.MAX_SAFE_INTEGER) ? memberId(Number(asked)) : NO_MEMBER;
  const record = target === NO_MEMBER ? undefined : member.machine.member(target);
  if (record === undefined || record.isLearner || !raft.conf.voters.includes(target))
    throw new ErrorAnswer("BadLeaderTransferee");
  if (target === member.id) return {};
  host.log("info", `leadership transfer from ${member.id.toString(16)} to ${target.toString(16)} starting`);
  if (!raft.transferLeadership(target)) throw new ErrorAnswer("NotLeader");
  const deadline = performance.now() + MOVE_LEADER_WAIT_MS;
  for (;;) {
    await new Promise((r) => setTimeout(r, MOVE_LEADER_POLL_MS));
    if (raft.lead === target) break;
    const gaveUp = raft.role === "leader" && raft.leadTransferee === NO_MEMBER;
    const other = raft.lead !== NO_MEMBER && raft.lead !== member.id;
    if (gaveUp || other || call.cancelled === true || performance.now() >= deadline)
      throw new ErrorAnswer("TimeoutLeaderTransfer");
  }
  host.log("info", `leadership transfer to ${target.toString(16)} finished`);
  return {};
}

/** etcd's DefaultQuotaBytes: the quota when --quota-backend-bytes is 0 (2 GiB). */
export const DEFAULT_QUOTA_BACKEND_BYTES = 2 * 1024 * 1024 * 1024;
/** etcd's MaxQuotaBytes: a larger quota is allowed, with a warning (8 GiB). */
export const MAX_QUOTA_BACKEND_BYTES = 8 * 1024 * 1024 * 1024;

/** etcd's quotaAlarmer: the space quota in front of writes (see the header). */
export class SpaceQuota {
  private readonly host: ApiHost;
  /** Negative: no quota (etcd's passthroughQuota). */
  readonly quotaBytes: number;

  /**
   * `quotaBackendBytes` as etcd's flag (etcd NewBackendQuota): 0 or absent is
   * DEFAULT_QUOTA_BACKEND_BYTES, negative disables the quota, above
   * MAX_QUOTA_BACKEND_BYTES is kept with a warning.
   */
  constructor(host: ApiHost, quotaBackendBytes = 0) {
    this.host = host;
    this.quotaBytes = quotaBackendBytes === 0 ? DEFAULT_QUOTA_BACKEND_BYTES : quotaBackendBytes;
    if (this.quotaBytes > MAX_QUOTA_BACKEND_BYTES)
      host.log(
        "warn",
        `quota exceeds the maximum value: --quota-backend-bytes ${this.quotaBytes} is more than ${MAX_QUOTA_BACKEND_BYTES}`,
      );
  }

  /**
   * Resolves if `command` may be proposed; otherwise raises NOSPACE for this
   * member through Raft (its outcome does not matter: etcd ignores it too)
   * and throws ErrorAnswer("NoSpace").
   */
  async check(command: Command): Promise<void> {
    const cost = quotaCostBytes(command);
    if (cost === 0 || this.quotaBytes < 0) return;
    const member = this.host.member;
    if (member.machine.sizeBytes() + cost < this.quotaBytes) return;
    try {
      await member.write({ type: "alarm", action: "activate", member: BigInt(member.id), alarm: "nospace" });
    } catch (e) {
      this.host.log("warn", `could not raise the NOSPACE alarm: ${(e as Error).message}`);
    }
    throw new ErrorAnswer("NoSpace");
  }
}
