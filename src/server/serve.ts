/**
 * `leasehold serve`: one member process. Opens (or creates) the data
 * directory, bootstraps a new cluster's membership into the log on first
 * start (`--initial-cluster-state new`) or starts empty to join an existing
 * one, connects to its peers, serves the etcd v3 API on every client URL, and
 * shuts down gracefully on SIGTERM/SIGINT: hands leadership to a follower if
 * it leads, stops accepting calls, flushes and closes.
 */

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ClusterMember } from "../api/server.ts";
import { ApiServer } from "../api/server.ts";
import type { ServeConfig } from "../cli/serve-config.ts";
import type { MemberId } from "../raft/index.ts";
import { bootstrapState, joiningState, memberId } from "../raft/index.ts";
import { openStorage } from "../storage/index.ts";
import type { PeerAddress, TransportTls } from "../transport/index.ts";
import { PeerTransport } from "../transport/index.ts";
import type { TransportPort } from "./member.ts";
import { Member } from "./member.ts";

export interface Running {
  readonly member: Member;
  readonly clientPorts: readonly number[];
  /** Stops everything (as SIGTERM does); resolves when closed. */
  stop(): Promise<void>;
}

type Log = (level: "info" | "warn" | "error", msg: string) => void;

/** Starts a member from its configuration. */
export async function serve(config: ServeConfig, log: Log): Promise<Running> {
  const { storage, initial: recovered } = openStorage(config.dataDir);
  let initial = recovered;
  const fresh =
    recovered.hardState.term === 0 && recovered.entries.length === 0 && recovered.snapshot.meta.index === 0;
  if (fresh) {
    if (config.initialClusterState === "new") {
      initial = bootstrapState(config.initialCluster.map((m) => memberId(m.id)));
      storage.save(initial.hardState, initial.entries, undefined);
      log("info", `bootstrapped a new cluster of ${config.initialCluster.length} in ${config.dataDir}`);
    } else {
      initial = joiningState();
      log("info", `joining an existing cluster with an empty ${config.dataDir}`);
    }
  } else {
    log(
      "info",
      `recovered ${config.dataDir}: term ${recovered.hardState.term}, commit ${recovered.hardState.commit}, snapshot at ${recovered.snapshot.meta.index}, ${recovered.entries.length} entries`,
    );
  }

  const peers = config.initialCluster.filter((m) => m.id !== config.memberId);
  // Peer messages may arrive before the member exists: they are dropped (Raft retries).
  let member: Member | undefined;
  const transport: TransportPort & { close(): Promise<void> } =
    peers.length === 0
      ? { send: () => false, close: async () => {} }
      : await startPeerTransport(config, (from, payload) => member?.receive(from, payload), log);

  member = new Member(
    {
      id: memberId(config.memberId),
      heartbeatMs: config.heartbeatIntervalMs,
      electionMs: config.electionTimeoutMs,
      snapshotCount: config.snapshotCount,
      log: (level, msg) => log(level, msg),
    },
    initial,
    storage,
    transport,
  );
  const members = (): ClusterMember[] =>
    config.initialCluster.map((m) => ({
      id: m.id,
      name: m.name,
      peerUrls: m.peerUrls.map((u) => u.url),
      clientUrls: m.id === config.memberId ? config.advertiseClientUrls.map((u) => u.url) : [],
    }));
  const api = new ApiServer({
    member,
    clusterId: config.clusterId,
    members,
    dbSize: () => dirBytes(config.dataDir),
    log,
  });
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
  member.start();
  log(
    "info",
    `member ${config.name} (${config.memberId.toString(16)}) serving clients on ${config.listenClientUrls.map((u) => u.url).join(", ")}`,
  );

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await handOver(member, config.electionTimeoutMs);
      await api.close();
      member.stop();
      await transport.close();
      const st = storage.stats();
      log(
        "info",
        `storage: fsyncs=${st.fsyncs} saves=${st.saves} bytes=${st.bytesWritten} segments=${st.segments}`,
      );
      storage.close();
      log("info", `member ${config.name} stopped`);
    })();
    return stopping;
  };
  return { member, clientPorts, stop };
}

/** If this member leads a cluster with other voters, transfers leadership and waits (at most one election timeout). */
async function handOver(member: Member, electionMs: number): Promise<void> {
  const raft = member.raft;
  if (raft.role !== "leader") return;
  const target = raft.conf.voters.find((v) => v !== member.id);
  if (target === undefined) return;
  raft.transferLeadership(target as MemberId);
  const deadline = performance.now() + electionMs;
  while (raft.role === "leader" && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The peer transport, for clusters of more than one member (it listens on the first --listen-peer-urls). */
async function startPeerTransport(
  config: ServeConfig,
  deliver: (from: MemberId, payload: Uint8Array) => void,
  log: Log,
): Promise<TransportPort & { close(): Promise<void> }> {
  const listen = config.listenPeerUrls[0]!;
  const peers = new Map<MemberId, PeerAddress>();
  for (const m of config.initialCluster) {
    if (m.id === config.memberId) continue;
    const u = m.peerUrls[0]!;
    peers.set(memberId(m.id), { host: u.host, port: u.port });
  }
  let tls: TransportTls | undefined;
  if (config.peerTls !== undefined) {
    const t = config.peerTls;
    if (t.trustedCaFile === undefined) throw new Error("serve: peer TLS needs --peer-trusted-ca-file");
    tls = {
      cert: readFileSync(t.certFile),
      key: readFileSync(t.keyFile),
      ca: readFileSync(t.trustedCaFile),
      clientCertAuth: t.clientCertAuth,
    };
  }
  const transport = new PeerTransport({
    selfId: memberId(config.memberId),
    clusterId: config.clusterId,
    listen: { host: listen.host, port: listen.port },
    peers,
    tls,
    onMessage: deliver,
    log: (e) => log(e.level, `transport: ${e.code}: ${e.message}`),
  });
  await transport.start();
  return { send: (to, payload) => transport.send(to, payload), close: () => transport.close() };
}

/** Bytes of every file under `dir` (Status's db size: the WAL and the snapshots). */
function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += dirBytes(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}
