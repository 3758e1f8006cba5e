/**
 * etcdserverpb.Auth. Not yet implemented: every method answers NotCapable.
 */

import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { ApiHost } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import { ETCD_SERVICES } from "./proto.ts";

export function authService(host: ApiHost): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const name of Object.keys(ETCD_SERVICES.Auth.methods))
    impl[name] = host.unary(async () => {
      throw new ErrorAnswer("NotCapable");
    });
  return impl;
}
