/**
 * In-process mode: `open()` runs one leasehold member inside the calling
 * process and answers the same `LeaseholdClient` as `connect()`, so code
 * moves between an embedded member and a cluster without changes.
 *
 * Contract:
 * - The same server code as `leasehold serve`: with `dataDir`, exactly
 *   `serve()` (src/server/serve.ts: the WAL with fsync, snapshots, the data
 *   directory lock, /metrics), a cluster of one; without, the same Member,
 *   state machine and ApiServer with nothing on disk (the state is lost when
 *   the process ends or `close()` is called), as a cache or a test would want.
 * - The member serves gRPC on 127.0.0.1 on a port the OS picks (`port`), so
 *   etcdctl and other processes on the machine can reach it too; the client
 *   it returns talks to it there. Nothing listens on another interface.
 * - `close()` releases the client's leases, closes it, and stops the member
 *   (gracefully: the WAL is synced and the directory unlocked).
 */

import { ApiServer } from "../api/server.ts";
import { parseServeArgs } from "../cli/serve-config.ts";
import { type ConnectOptions, connect, type LeaseholdClient } from "../client/client.ts";
import { bootstrapState, memberId } from "../raft/index.ts";
import { Member } from "../server/member.ts";
import { serve } from "../server/serve.ts";

export interface OpenOptions extends Omit<ConnectOptions, "endpoints" | "tls" | "auth"> {
  /** Keep the state here (created if absent); absent: in memory only. */
  readonly dataDir?: string;
  /** Where the member's own log lines go (default: dropped). */
  readonly log?: (level: "info" | "warn" | "error", msg: string) => void;
}

/** A client of an in-process member; `close()` stops the member too. */
export interface EmbeddedClient extends LeaseholdClient {
  /** The member's client port on 127.0.0.1. */
  readonly port: number;
}

const HEARTBEAT_MS = 100;
const ELECTION_MS = 1000;
const SNAPSHOT_COUNT = 100_000;

/** Starts a single-member leasehold in this process and connects to it. */
export async function open(options: OpenOptions = {}): Promise<EmbeddedClient> {
  const log = options.log ?? (() => {});
  const running =
    options.dataDir === undefined ? await startInMemory(log) : await startOnDisk(options.dataDir, log);
  let client: LeaseholdClient;
  try {
    client = await connect({ ...options, endpoints: [`127.0.0.1:${running.port}`] });
  } catch (e) {
    await running.stop();
    throw e;
  }
  const close = client.close.bind(client);
  return Object.assign(client, {
    port: running.port,
    close: async () => {
      await close();
      await running.stop();
    },
  });
}

interface Started {
  readonly port: number;
  stop(): Promise<void>;
}

async function startOnDisk(dataDir: string, log: NonNullable<OpenOptions["log"]>): Promise<Started> {
  const config = parseServeArgs([
    "--name",
    "embedded",
    "--data-dir",
    dataDir,
    "--listen-client-urls",
    "http://127.0.0.1:0",
    "--advertise-client-urls",
    "http://127.0.0.1:0",
    "--listen-peer-urls",
    "http://127.0.0.1:0",
    "--initial-advertise-peer-urls",
    "http://127.0.0.1:0",
    "--initial-cluster",
    "embedded=http://127.0.0.1:0",
    "--heartbeat-interval",
    String(HEARTBEAT_MS),
    "--election-timeout",
    String(ELECTION_MS),
  ]);
  const r = await serve(config, log);
  return { port: r.clientPorts[0]!, stop: () => r.stop() };
}

async function startInMemory(log: NonNullable<OpenOptions["log"]>): Promise<Started> {
  const id = memberId(1);
  const member = new Member(
    { id, heartbeatMs: HEARTBEAT_MS, electionMs: ELECTION_MS, snapshotCount: SNAPSHOT_COUNT, log },
    bootstrapState([id]),
    // Nothing is durable: the Ready contract holds trivially (a crash loses everything anyway).
    { save: () => {}, saveSnapshot: () => {} },
    // A cluster of one: nobody to send to.
    { send: () => false },
  );
  const api = new ApiServer({ member, clusterId: 1n, dbSize: () => member.machine.sizeBytes(), log });
  const port = await api.listen("127.0.0.1", 0);
  member.start();
  return {
    port,
    stop: async () => {
      await api.close();
      member.stop();
    },
  };
}
