/**
 * v3lockpb.Lock: Lock(name, lease) and Unlock(key), server side (etcd's
 * v3lock service). Not yet implemented: every method answers NotCapable.
 */

import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { ApiHost } from "./context.ts";
import { ErrorAnswer } from "./context.ts";

export function lockService(host: ApiHost): UntypedServiceImplementation {
  const notCapable = host.unary(async () => {
    throw new ErrorAnswer("NotCapable");
  });
  return { Lock: notCapable, Unlock: notCapable };
}
