/**
 * The side-by-side workloads (issue 6 §1), in the order `all` runs them.
 * Client processes look their worker function up here by name.
 */

import type { WorkloadDef } from "../harness/workload.ts";
import { expiry } from "./expiry.ts";
import { failover } from "./failover.ts";
import { holderKeepalive } from "./holder-keepalive.ts";
import { keepalive } from "./keepalive.ts";
import { lock } from "./lock.ts";
import { memory } from "./memory.ts";
import { grant, put, putSharedLease } from "./throughput.ts";
import { watch } from "./watch.ts";

export const WORKLOADS: readonly WorkloadDef[] = [
  grant,
  keepalive,
  holderKeepalive,
  put,
  putSharedLease,
  lock,
  expiry,
  failover,
  memory,
  watch,
];
