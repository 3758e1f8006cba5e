/**
 * v3electionpb.Election: Campaign, Proclaim, Leader, Observe, Resign (etcd's
 * v3election service). Not yet implemented: every method answers NotCapable.
 */

import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { ApiHost } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import { etcdServiceError } from "./errors.ts";
import type { WireMessage } from "./proto.ts";

export function electionService(host: ApiHost): UntypedServiceImplementation {
  const notCapable = host.unary(async () => {
    throw new ErrorAnswer("NotCapable");
  });
  return {
    Campaign: notCapable,
    Proclaim: notCapable,
    Leader: notCapable,
    Observe: (call: ServerWritableStream<WireMessage, WireMessage>) => {
      call.on("error", () => {});
      call.emit("error", etcdServiceError("NotCapable"));
    },
    Resign: notCapable,
  };
}
