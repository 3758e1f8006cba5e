/**
 * etcdserverpb.Maintenance: Status, Alarm, Defragment (a no-op that answers
 * success: there is no B+tree file to compact); Hash, HashKV, Snapshot and
 * MoveLeader answer NotCapable for now.
 */

import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { MemberId } from "../raft/index.ts";
import type { ApiHost } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import { etcdServiceError } from "./errors.ts";
import type { WireMessage } from "./proto.ts";

type W = WireMessage;

/** The API version Status reports: clients gate features on it. */
export const REPORTED_VERSION = "3.4.0";

export interface MaintenanceOptions {
  readonly dbSize: () => number;
}

export function maintenanceService(host: ApiHost, options: MaintenanceOptions): UntypedServiceImplementation {
  const notCapable = host.unary(async () => {
    throw new ErrorAnswer("NotCapable");
  });
  const status = (): W => {
    const member = host.member;
    const raft = member.raft;
    return {
      header: host.header(),
      version: REPORTED_VERSION,
      dbSize: String(options.dbSize()),
      leader: String(raft.lead as MemberId),
      raftIndex: String(raft.log.committed),
      raftTerm: String(raft.term),
      raftAppliedIndex: String(raft.log.applied),
      dbSizeInUse: String(options.dbSize()),
      isLearner: raft.conf.learners.includes(member.id),
    };
  };
  return {
    Alarm: host.unary(async () => ({ header: host.header(), alarms: [] })),
    Status: host.unary(
      async () => status(),
      () => true,
    ),
    Defragment: host.unary(async () => ({ header: host.header() })),
    Hash: notCapable,
    HashKV: notCapable,
    Snapshot: (call: ServerWritableStream<W, W>) => {
      call.on("error", () => {});
      call.emit("error", etcdServiceError("NotCapable"));
    },
    MoveLeader: notCapable,
  };
}
