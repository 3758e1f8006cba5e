/**
 * `leasehold serve`: one member process. Opens (or creates) the data
 * directory and locks it, then:
 * - a new cluster (`--initial-cluster-state new`, first start): writes the
 *   founding membership into the log (each member's name and peer URLs in
 *   its conf entry's context);
 * - joining (`--initial-cluster-state existing`, first start): asks the
 *   members named in `--initial-cluster` for the current membership over
 *   their peer port (as etcd's GET /members), finds itself by its advertised
 *   peer URLs (added before with MemberAdd), and starts with an empty log that
 *   the leader fills;
 * - a restart: the identity file says who it is; the flags' cluster layout is
 *   ignored, as etcd ignores it.
 * It connects to its peers (the peer set then follows the replicated member
 * table), publishes its name and client URLs (etcd's publish), serves the
 * etcd v3 API on every client URL, and shuts down gracefully on SIGTERM and
 * SIGINT: hands leadership to a follower if it leads, stops accepting calls,
 * flushes and closes. A member that learns it was removed stops by itself.
 */

import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { createHttpHandler, type HttpHandler } from "../api/gateway.ts";
import { MemberMetrics } from "../api/metrics.ts";
import { ApiServer } from "../api/server.ts";
import type { ServeConfig } from "../cli/serve-config.ts";
import type { MemberId, RaftInitialState } from "../raft/index.ts";
import { bootstrapState, joiningState, memberId } from "../raft/index.ts";
import type { MemberRecord } from "../state/index.ts";
import { encodeMemberContext } from "../state/index.ts";
import { openStorage } from "../storage/index.ts";
import type { PeerAddress, TransportTls } from "../transport/index.ts";
import { PeerTransport, queryMembership } from "../transport/index.ts";
import { Member } from "./member.ts";

export interface Running {
  readonly member: Member;
  readonly clientPorts: readonly number[];
  /** Stops everything (as SIGTERM does); resolves when closed. */
  stop(): Promise<void>;
  /** Resolves once the member stopped by itself because it was removed from the cluster. */
  readonly removed: Promise<void>;
}

type Log = (level: "info" | "warn" | "error", msg: string) => void;

/** Who this member is, fixed at its first start (etcd keeps it in the WAL metadata). */
export interface Identity {
  readonly memberId: MemberId;
  readonly clusterId: bigint;
}

/** What a membership query answers (the peer port's membership document). */
interface MembershipDocument {
  readonly clusterId: string;
  readonly members: readonly MemberRecord[];
  /** Ids removed for good (absent in documents of older members). */
  readonly removed?: readonly number[];
}

const IDENTITY_FILE = "member.identity";
const LOCK_FILE = "member.lock";
/** How long a removed member stays reachable, so it can be told it was removed (etcd answers 410 Gone). */
const REMOVED_GRACE_ELECTIONS = 5;
const DISCOVERY_ROUNDS = 5;

/** Starts a member from its configuration. Anything started before a failure is closed again. */
export async function serve(config: ServeConfig, log: Log): Promise<Running> {
  mkdirSync(config.dataDir, { recursive: true });
  const unlock = lockDataDir(config.dataDir);
  const cleanups: (() => Promise<void> | void)[] = [unlock];
  try {
    return await start(config, log, cleanups);
  } catch (e) {
    for (const c of cleanups.reverse()) await c();
    throw e;
  }
}

async function start(
  config: ServeConfig,
  log: Log,
  cleanups: (() => Promise<void> | void)[],
): Promise<Running> {
  const peerTls = peerTlsOf(config);
  // Prometheus metrics (/metrics on the client port), etcd's names where etcd has them.
  const metrics = new MemberMetrics({ processMetrics: true });
  const { storage, initial: recovered } = openStorage(config.dataDir, {
    onWalSync: (seconds) => metrics.observeWalFsync(seconds),
  });
  cleanups.push(() => storage.close());
  let initial: RaftInitialState = recovered;
  const fresh =
    recovered.hardState.term === 0 && recovered.entries.length === 0 && recovered.snapshot.meta.index === 0;
  let identity: Identity;
  let discovered: readonly MemberRecord[] = [];
  if (fresh && config.initialClusterState === "new") {
    identity = { memberId: memberId(config.memberId), clusterId: config.clusterId };
    const byId = new Map(config.initialCluster.map((m) => [m.id, m]));
    initial = bootstrapState(
      config.initialCluster.map((m) => memberId(m.id)),
      (id) => {
        const m = byId.get(id)!;
        return encodeMemberContext({ name: m.name, peerUrls: m.peerUrls.map((u) => u.url) });
      },
    );
    storage.save(initial.hardState, initial.entries, undefined);
    log("info", `bootstrapped a new cluster of ${config.initialCluster.length} in ${config.dataDir}`);
  } else if (fresh) {
    const found = await discover(config, peerTls, log);
    identity = found.identity;
    discovered = found.members;
    initial = joiningState();
    log(
      "info",
      `joining cluster ${identity.clusterId.toString(16)} as member ${identity.memberId.toString(16)} with an empty ${config.dataDir}`,
    );
  } else {
    identity = readIdentity(config.dataDir) ?? {
      memberId: memberId(config.memberId),
      clusterId: config.clusterId,
    };
    log(
      "info",
      `recovered ${config.dataDir}: term ${recovered.hardState.term}, commit ${recovered.hardState.commit}, snapshot at ${recovered.snapshot.meta.index}, ${recovered.entries.length} entries`,
    );
  }
  writeIdentity(config.dataDir, identity);
  const self = identity.memberId;

  // Peer messages may arrive before the member exists: they are dropped (Raft retries).
  let member: Member | undefined;
  const listen = config.listenPeerUrls[0]!;
  const transport = new PeerTransport({
    selfId: self,
    clusterId: identity.clusterId,
    listen: { host: listen.host, port: listen.port },
    tls: peerTls,
    onMessage: (from, payload) => member?.receive(from, payload),
    membership: () => {
      if (member === undefined) throw new Error("the member is starting");
      const doc: MembershipDocument = {
        clusterId: identity.clusterId.toString(),
        members: member.machine.memberList(),
        removed: member.machine.removedMemberIds(),
      };
      return new TextEncoder().encode(JSON.stringify(doc));
    },
    log: (e) => log(e.level, `transport: ${e.code}: ${e.message}`),
  });
  await transport.start();
  cleanups.push(() => transport.close());

  member = new Member(
    {
      id: self,
      heartbeatMs: config.heartbeatIntervalMs,
      electionMs: config.electionTimeoutMs,
      snapshotCount: config.snapshotCount,
      log: (level, msg) => log(level, msg),
    },
    initial,
    storage,
    transport,
  );
  const m = member;
  cleanups.push(() => m.stop());

  // The peer set: the member table once there is one; until then the flags' layout or what discovery found.
  const initialPeers = new Map<MemberId, PeerAddress>();
  const table = m.machine.memberList();
  if (table.length > 0) for (const r of table) addPeerOf(initialPeers, self, r.id, r.peerUrls);
  else if (discovered.length > 0) for (const r of discovered) addPeerOf(initialPeers, self, r.id, r.peerUrls);
  else if (identity.memberId === config.memberId) {
    // The flags' layout (ids derived from the names): right for a cluster bootstrapped with these flags; the
    // member table replaces it as soon as the log is replayed. (A member that joined later has ids the flags
    // cannot derive: it waits for the replay.) This member itself is known by its peer URLs.
    const mine = new Set(config.initialAdvertisePeerUrls.map((u) => u.url));
    for (const c of config.initialCluster) {
      if (c.peerUrls.some((u) => mine.has(u.url))) continue;
      addPeerOf(
        initialPeers,
        self,
        memberId(c.id),
        c.peerUrls.map((u) => u.url),
      );
    }
  }
  transport.updatePeers(initialPeers);
  const peers = new PeerSync(m, transport, initialPeers, config.electionTimeoutMs * REMOVED_GRACE_ELECTIONS);

  const dbSize = (): number => m.machine.sizeBytes();
  metrics.attach({ member: m, dbSize });
  // The JSON gateway, /health, /version and /metrics answer plain HTTP/1.1 on the client port.
  let http: HttpHandler | undefined;
  const api = new ApiServer({
    http: (req, res) => http?.(req, res),
    member: m,
    clusterId: identity.clusterId,
    peerActive: (id) => transport.isActive(id),
    // What the space quota counts (etcd reports its backend's size, which its quota counts).
    dbSize,
    quotaBackendBytes: config.quotaBackendBytes,
    authTokenTtlSeconds: config.authTokenTtlSeconds,
    log,
  });
  http = createHttpHandler(api, { metrics, log });
  cleanups.push(() => api.close());
  const clientPorts: number[] = [];
  const t = config.clientTls;
  const clientTls =
    t === undefined
      ? undefined
      : {
          cert: readFileSync(t.certFile),
          key: readFileSync(t.keyFile),
          clientCa:
            t.clientCertAuth && t.trustedCaFile !== undefined ? readFileSync(t.trustedCaFile) : undefined,
        };
  for (const u of config.listenClientUrls) {
    clientPorts.push(await api.listen(u.host, u.port, u.scheme === "https" ? clientTls : undefined));
  }
  m.start();
  log(
    "info",
    `member ${config.name} (${self.toString(16)}) serving clients on ${config.listenClientUrls.map((u) => u.url).join(", ")}`,
  );

  let stopping: Promise<void> | undefined;
  const stop = (handOverFirst = true): Promise<void> => {
    stopping ??= (async () => {
      peers.close();
      if (handOverFirst) await handOver(m, transport, config.electionTimeoutMs);
      await api.close();
      m.stop();
      await transport.close();
      const st = storage.stats();
      log(
        "info",
        `storage: fsyncs=${st.fsyncs} saves=${st.saves} bytes=${st.bytesWritten} segments=${st.segments}`,
      );
      storage.close();
      unlockDir(config.dataDir);
      log("info", `member ${config.name} stopped`);
    })();
    return stopping;
  };

  let markRemoved: () => void = () => {};
  const removed = new Promise<void>((resolve) => {
    markRemoved = resolve;
  });
  let removing = false;
  const onRemoved = (): void => {
    if (stopping !== undefined || removing) return;
    removing = true;
    log("warn", "the member has been permanently removed from the cluster; stopping");
    // A leader that applied its own removal waits a moment so the commit reaches the others (etcd: 1 s).
    const delayMs = m.isLeader ? Math.min(1000, config.electionTimeoutMs) : 0;
    setTimeout(() => void stop(false).then(markRemoved), delayMs);
  };
  m.onRemoved = onRemoved;
  m.onMembershipChange = () => {
    if (m.machine.memberRemoved(self)) onRemoved();
    else peers.changed();
  };
  if (!fresh) void learnFromPeers(new Map(initialPeers), peerTls, config, self, peers, onRemoved, log);

  void publish(m, config, () => stopping !== undefined, log);
  return { member: m, clientPorts, stop: () => stop(true), removed };
}

/**
 * Keeps the transport's peers equal to the member table (batched: a replay of
 * many conf entries makes one update). A removed member stays reachable for a
 * grace period, so its messages can be answered "you were removed".
 */
class PeerSync {
  private pending = false;
  private closed = false;
  private readonly retiring = new Map<MemberId, number>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(
    private readonly member: Member,
    private readonly transport: PeerTransport,
    private known: Map<MemberId, PeerAddress>,
    private readonly graceMs: number,
  ) {}

  changed(): void {
    if (this.pending || this.closed) return;
    this.pending = true;
    queueMicrotask(() => {
      this.pending = false;
      this.sync();
    });
  }

  /** Peers learned from another member's membership (remotes, as etcd calls them): kept until removed. */
  addRemotes(members: readonly MemberRecord[]): void {
    for (const r of members)
      if (!this.known.has(r.id)) addPeerOf(this.known, this.member.id, r.id, r.peerUrls);
    this.transport.updatePeers(this.known);
    this.changed();
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
  }

  private sync(): void {
    if (this.closed) return;
    const list = this.member.machine.memberList();
    if (list.length === 0) return;
    const want = new Map<MemberId, PeerAddress>();
    for (const r of list) addPeerOf(want, this.member.id, r.id, r.peerUrls);
    const now = performance.now();
    for (const [id, address] of this.known) {
      if (want.has(id)) continue;
      if (!this.member.machine.memberRemoved(id)) {
        // Not in the table, not removed: a member this one has not heard of yet (a snapshot or a
        // log older than its join). Keep it: it may be the leader that brings the table up to date.
        want.set(id, address);
        continue;
      }
      let until = this.retiring.get(id);
      if (until === undefined) {
        until = now + this.graceMs;
        this.retiring.set(id, until);
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.sync();
        }, this.graceMs + 1);
        this.timers.add(t);
      }
      if (now < until) want.set(id, address);
    }
    this.known = want;
    this.transport.updatePeers(want);
  }
}

function addPeerOf(
  into: Map<MemberId, PeerAddress>,
  self: MemberId,
  id: MemberId,
  urls: readonly string[],
): void {
  if (id === self || urls.length === 0) return;
  const u = new URL(urls[0]!);
  into.set(id, { host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port) });
}

/**
 * etcd's publish: once a leader is known, the member writes its name and
 * client URLs into the member table (MemberList shows it "started"), and
 * again whenever they differ from the flags (a restart with new URLs).
 */
async function publish(m: Member, config: ServeConfig, stopped: () => boolean, log: Log): Promise<void> {
  const clientUrls = config.advertiseClientUrls.map((u) => u.url);
  while (!stopped()) {
    const rec = m.machine.member(m.id);
    if (rec !== undefined && rec.name === config.name && rec.clientUrls.join(",") === clientUrls.join(","))
      return;
    if (rec !== undefined && m.leader !== 0) {
      try {
        const out = await m.write({ type: "memberPublish", member: m.id, name: config.name, clientUrls });
        if (out.result.kind === "member") {
          log("info", `published ${config.name} with client URLs ${clientUrls.join(", ")}`);
          continue;
        }
        log("warn", `publishing ${config.name} failed: ${out.result.kind}; trying again later`);
      } catch {
        // No leader yet, or it changed: try again below.
      }
    }
    // Soon after start the member table or the leader may not be there yet: look again shortly.
    await new Promise<void>((r) => setTimeout(r, config.heartbeatIntervalMs).unref());
  }
}

/**
 * A restarted member's table may be older than the cluster's (it was down
 * while members joined): ask the peers it knows for the current membership,
 * keep the members it did not know as peers, and stop if it was removed.
 */
async function learnFromPeers(
  known: ReadonlyMap<MemberId, PeerAddress>,
  tls: TransportTls | undefined,
  config: ServeConfig,
  self: MemberId,
  peers: PeerSync,
  onRemoved: () => void,
  log: Log,
): Promise<void> {
  for (const [id, address] of known) {
    let doc: MembershipDocument;
    try {
      doc = await askMembership(address, tls, config.electionTimeoutMs * 2);
    } catch {
      continue; // down, or starting: the next one, or the log, will do
    }
    if (doc.removed?.includes(self)) {
      log("warn", `member ${id.toString(16)} says this member was removed from the cluster`);
      onRemoved();
      return;
    }
    peers.addRemotes(doc.members);
    return;
  }
}

/** If this member leads a cluster with other connected voters, transfers leadership and waits (at most one election timeout). */
async function handOver(member: Member, transport: PeerTransport, electionMs: number): Promise<void> {
  const raft = member.raft;
  if (raft.role !== "leader") return;
  const voters = raft.conf.voters.filter((v) => v !== member.id);
  // The most caught-up voter that is reachable: a transfer to a dead or lagging member just waits out the timeout.
  const target = voters
    .filter((v) => transport.isActive(v))
    .sort((a, b) => (raft.progress(b)?.match ?? 0) - (raft.progress(a)?.match ?? 0))[0];
  if (target === undefined) return;
  raft.transferLeadership(target);
  const deadline = performance.now() + electionMs;
  while (raft.role === "leader" && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Asks the members named in --initial-cluster (except this one) for the
 * membership, and finds this member in it by its advertised peer URLs.
 */
async function discover(
  config: ServeConfig,
  tls: TransportTls | undefined,
  log: Log,
): Promise<{ identity: Identity; members: readonly MemberRecord[] }> {
  const mine = new Set(config.initialAdvertisePeerUrls.map((u) => u.url));
  const targets = config.initialCluster.flatMap((c) => c.peerUrls).filter((u) => !mine.has(u.url));
  if (targets.length === 0)
    throw new Error(
      "--initial-cluster-state existing needs the existing members' peer URLs in --initial-cluster",
    );
  const errors: string[] = [];
  let notListed = false;
  for (let round = 0; round < DISCOVERY_ROUNDS; round++) {
    for (const u of targets) {
      let doc: MembershipDocument;
      try {
        doc = await askMembership({ host: u.host, port: u.port }, tls, config.electionTimeoutMs * 2);
      } catch (e) {
        errors.push(`${u.url}: ${(e as Error).message}`);
        continue;
      }
      const me = doc.members.find((r) => r.peerUrls.some((p) => mine.has(p)));
      if (me === undefined) {
        // That member may lag behind the MemberAdd (or be a joiner itself): ask the others too.
        errors.push(`${u.url}: no member with peer URL ${[...mine].join(",")}`);
        notListed = true;
        continue;
      }
      log("info", `learned the membership from ${u.url}: ${doc.members.length} members`);
      return {
        identity: { memberId: memberId(me.id), clusterId: BigInt(doc.clusterId) },
        members: doc.members,
      };
    }
    await new Promise((r) => setTimeout(r, config.electionTimeoutMs));
  }
  if (notListed)
    throw new Error(
      `this member (peer URL ${[...mine].join(",")}) is not in the cluster: add it first (etcdctl member add ${config.name} --peer-urls=${[...mine].join(",")}); ${errors.slice(-targets.length).join("; ")}`,
    );
  throw new Error(`could not retrieve the cluster's membership: ${errors.slice(-targets.length).join("; ")}`);
}

/** The membership document of the member at `address` (rejects if it cannot be had). */
async function askMembership(
  address: PeerAddress,
  tls: TransportTls | undefined,
  timeoutMs: number,
): Promise<MembershipDocument> {
  const body = await queryMembership(address, { tls, timeoutMs });
  return JSON.parse(new TextDecoder().decode(body)) as MembershipDocument;
}

function peerTlsOf(config: ServeConfig): TransportTls | undefined {
  const t = config.peerTls;
  if (t === undefined) return undefined;
  if (t.trustedCaFile === undefined) throw new Error("serve: peer TLS needs --peer-trusted-ca-file");
  return {
    cert: readFileSync(t.certFile),
    key: readFileSync(t.keyFile),
    ca: readFileSync(t.trustedCaFile),
    clientCertAuth: t.clientCertAuth,
  };
}

function readIdentity(dir: string): Identity | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, IDENTITY_FILE), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  const v = JSON.parse(text) as { memberId?: unknown; clusterId?: unknown };
  if (typeof v.memberId !== "string" || typeof v.clusterId !== "string")
    throw new Error(`${join(dir, IDENTITY_FILE)} is malformed`);
  return { memberId: memberId(Number.parseInt(v.memberId, 16)), clusterId: BigInt(v.clusterId) };
}

/** Writes the identity file atomically (write, fsync, rename, fsync the directory); restore.ts too. */
export function writeIdentity(dir: string, id: Identity): void {
  const path = join(dir, IDENTITY_FILE);
  const text = `${JSON.stringify({ memberId: id.memberId.toString(16), clusterId: id.clusterId.toString() })}\n`;
  try {
    if (readFileSync(path, "utf8") === text) return;
  } catch {
    // Absent: write it.
  }
  const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  const fd = openSync(tmp, "w");
  try {
    writeFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dfd = openSync(dir, "r");
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/**
 * One process per data directory: a lock file holding the owner's pid. A
 * file left by a process that is gone (kill -9) is taken over.
 */
function lockDataDir(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeFileSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => unlockDir(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number.parseInt(readFileSync(path, "utf8"), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid))
        throw new Error(`data directory ${dir} is in use by process ${pid}`);
      rmSync(path, { force: true });
    }
  }
  throw new Error(`could not lock data directory ${dir}`);
}

function unlockDir(dir: string): void {
  const path = join(dir, LOCK_FILE);
  try {
    if (Number.parseInt(readFileSync(path, "utf8"), 10) === process.pid) rmSync(path, { force: true });
  } catch {
    // Already gone.
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
