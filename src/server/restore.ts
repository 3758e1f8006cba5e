/**
 * `leasehold snapshot restore` (etcd's `etcdctl snapshot restore`): turns a
 * snapshot file (db-snapshot.ts; saved with `etcdctl snapshot save` from a
 * leasehold member) into the data directory of one member of a NEW cluster,
 * from which `leasehold serve` starts as a restart of that member.
 *
 * As etcd's restore (clientv3/snapshot v3_snapshot.go): the cluster and the
 * member ids come from the flags (--initial-cluster, --initial-cluster-token,
 * --name), exactly as `leasehold serve` derives them for a new cluster, so
 * every member of an N-member cluster is restored from the same file with the
 * same flags, one data directory each, and they find each other. The key
 * space (with its history and compacted revision), the leases (each
 * re-granted with its full TTL: a new leader starts them at now + TTL) and
 * the rest of the replicated state (auth, alarms) come from the snapshot; the
 * old member table and client sessions do not (StateMachine.restoreAsNewCluster).
 *
 * The directory written: the founders' membership applied at indexes 1..n
 * (as a new cluster's bootstrap entries would be), saved as a Raft snapshot
 * at index n, term 1, with the hard state committing it; and the identity
 * file (member and cluster id). The data directory must not exist (etcd:
 * `data-dir "…" exists`); a restore that fails removes what it created.
 */

import { existsSync, readFileSync, rmSync } from "node:fs";
import type { InitialMember } from "../cli/serve-config.ts";
import type { ConfChange } from "../raft/index.ts";
import { logIndex, memberId, NO_MEMBER, term } from "../raft/index.ts";
import { encodeMemberContext, StateMachine } from "../state/index.ts";
import { openStorage } from "../storage/index.ts";
import type { DbSnapshotHeader } from "./db-snapshot.ts";
import { DbSnapshotError, decodeDbSnapshot } from "./db-snapshot.ts";
import { writeIdentity } from "./serve.ts";

export interface RestoreOptions {
  /** The snapshot file (`etcdctl snapshot save` output). */
  readonly snapshotPath: string;
  /** The new member's data directory; must not exist. */
  readonly dataDir: string;
  /** This member's id and the cluster's, as serve-config derives them from the same flags. */
  readonly memberId: number;
  readonly clusterId: bigint;
  /** Every founding member (--initial-cluster), this one included. */
  readonly initialCluster: readonly InitialMember[];
  /** Restore a file without (or with a wrong) checksum (etcdctl's --skip-hash-check). */
  readonly skipHashCheck?: boolean;
}

/** What was restored, for the command's log. */
export interface RestoreSummary {
  readonly from: DbSnapshotHeader;
  readonly revision: number;
  readonly leases: number;
  /** The Raft index the new data directory starts at (the number of founders). */
  readonly index: number;
}

/** A restore that cannot be done (the data directory exists, the file is bad). */
export class RestoreError extends Error {
  override readonly name = "RestoreError";
  readonly code = "RESTORE";
}

/** Writes the data directory (see the header). Throws RestoreError or DbSnapshotError. */
export function restoreDataDir(options: RestoreOptions): RestoreSummary {
  if (existsSync(options.dataDir)) throw new RestoreError(`data-dir "${options.dataDir}" exists`);
  if (!options.initialCluster.some((m) => m.id === options.memberId))
    throw new RestoreError(`member ${options.memberId.toString(16)} is not in the initial cluster`);
  const snap = decodeDbSnapshot(readFileSync(options.snapshotPath), { skipHashCheck: options.skipHashCheck });
  const founders: ConfChange[] = [...options.initialCluster]
    .sort((a, b) => a.id - b.id)
    .map((m) => ({
      kind: "addVoter",
      member: memberId(m.id),
      context: encodeMemberContext({ name: m.name, peerUrls: m.peerUrls.map((u) => u.url) }),
    }));
  let machine: StateMachine;
  try {
    machine = StateMachine.restoreAsNewCluster(snap.state, founders);
  } catch (e) {
    throw new DbSnapshotError(`the snapshot's state cannot be read: ${(e as Error).message}`);
  }
  const index = founders.length;
  try {
    const { storage } = openStorage(options.dataDir);
    try {
      storage.save({ term: term(1), vote: NO_MEMBER, commit: logIndex(index) }, [], {
        meta: {
          index: logIndex(index),
          term: term(1),
          conf: { voters: founders.map((f) => f.member), learners: [] },
        },
        data: machine.snapshot(),
      });
    } finally {
      storage.close();
    }
    writeIdentity(options.dataDir, { memberId: memberId(options.memberId), clusterId: options.clusterId });
  } catch (e) {
    rmSync(options.dataDir, { recursive: true, force: true });
    throw e;
  }
  return {
    from: snap.header,
    revision: machine.currentRevision(),
    leases: machine.leaseIds().length,
    index,
  };
}
