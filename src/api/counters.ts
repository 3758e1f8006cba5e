/**
 * leasehold.v1 Counters, server side (proto/leaseholdpb/leasehold.proto; the
 * layout and rules in src/state/counters.ts).
 *
 * Add(name, delta): ONE proposal ("counterAdd"), computed where it applies,
 *   in the log's order: no read-modify-write loop (ours or the client's), so
 *   concurrent Adds never lose an update. Answers the new value, with the
 *   write's revision in the header. Refused, changing nothing, when the sum
 *   leaves int64 (FAILED_PRECONDITION counterOverflow, trailer `value`: the
 *   current value) or the key holds something that is not a number
 *   (FAILED_PRECONDITION notCounter).
 * CompareAndSet(name, expected, value): one proposal ("counterCas");
 *   `succeeded` false (an answer, not an error) with the current value when
 *   the counter was not `expected`.
 * Get(name): a linearizable read; 0 for a counter never written; notCounter
 *   as above.
 *
 * Sessions (ARCHITECTURE rule 7): Add and CompareAndSet carry the call's
 * client session when it sends one (leases.ts sessionOf: the
 * `leasehold-client-id` and `leasehold-seq` metadata), like every other
 * mutation; the state machine applies a retry with the same pair once and
 * answers it with the first answer. Nothing here is special to counters, but
 * it matters most here: an Add retried WITHOUT a session after a lost answer
 * may add twice, so the SDK sends one.
 *
 * Permissions, while auth is on: Add and CompareAndSet need read and write
 * access to the counter's key (checked again at apply); Get needs read.
 */

import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { CounterValue } from "../state/index.ts";
import { COUNTER_KEY_PREFIX, counterKey, counterNameProblem } from "../state/index.ts";
import type { ApiHost, CallInfo, PermissionCheck } from "./context.ts";
import { sessionOf, sessionRefusal, throwFailed } from "./leasehold-common.ts";
import { LeaseholdError } from "./leasehold-errors.ts";
import type { WireMessage } from "./proto.ts";
import { int64FromWire } from "./proto.ts";

type W = WireMessage;

/** The Counters service's implementation for the gRPC server. */
export function countersService(host: ApiHost): UntypedServiceImplementation {
  return {
    Add: host.unary((w, call) => add(host, w, call)),
    Get: host.unary((w, call) => get(host, w, call)),
    CompareAndSet: host.unary((w, call) => compareAndSet(host, w, call)),
  };
}

// ---------------------------------------------------------------- requests

function nameOf(w: W): string {
  const name = typeof w.name === "string" ? w.name : "";
  const problem = counterNameProblem(name);
  if (problem !== undefined) throw new LeaseholdError("invalid", `name: ${problem}`);
  return name;
}

/** Reading and writing the counter's key (Add and CompareAndSet answer the value). */
function readWrite(name: string): PermissionCheck[] {
  const key = counterKey(name);
  return [
    { key, type: "write" },
    { key, type: "read" },
  ];
}

/** The refusal of a counter whose key holds `stored` (its first bytes), which is not a number. */
function notCounter(name: string, stored: Uint8Array): LeaseholdError {
  const text = JSON.stringify(Buffer.from(stored).toString("utf8"));
  return new LeaseholdError(
    "notCounter",
    `counter "${name}" holds ${text}, not a decimal int64 (written through the etcd API?): put a number at ${COUNTER_KEY_PREFIX}${name} or delete that key; nothing was changed`,
  );
}

// ---------------------------------------------------------------- methods

async function add(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const name = nameOf(w);
  const delta = int64FromWire(w.delta ?? "0");
  const auth = await host.authorize(call, readWrite(name));
  const out = await host.propose({ type: "counterAdd", counter: name, delta, auth, ...sessionOf(call) });
  const r = out.result;
  sessionRefusal(r);
  if (r.kind !== "counterAdd") throwFailed(r);
  switch (r.outcome) {
    case "added":
      return { header: host.header(r.header.revision), value: r.value.toString() };
    case "overflow":
      throw new LeaseholdError(
        "counterOverflow",
        `adding ${delta} to counter "${name}" (now ${r.value}) would leave int64; nothing was changed`,
        { value: r.value.toString() },
      );
    case "notNumber":
      throw notCounter(name, r.stored ?? new Uint8Array(0));
  }
}

async function compareAndSet(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const name = nameOf(w);
  const expected = int64FromWire(w.expected ?? "0");
  const value = int64FromWire(w.value ?? "0");
  const auth = await host.authorize(call, readWrite(name));
  const out = await host.propose({
    type: "counterCas",
    counter: name,
    expected,
    value,
    auth,
    ...sessionOf(call),
  });
  const r = out.result;
  sessionRefusal(r);
  if (r.kind !== "counterCas") throwFailed(r);
  if (r.outcome === "notNumber") throw notCounter(name, r.stored ?? new Uint8Array(0));
  return {
    header: host.header(r.header.revision),
    succeeded: r.outcome === "set",
    value: r.value.toString(),
  };
}

async function get(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const name = nameOf(w);
  await host.authorize(call, [{ key: counterKey(name), type: "read" }]);
  const { value, rev } = await host.member.read(true, (m): { value: CounterValue; rev: number } => ({
    value: m.counterValue(name),
    rev: m.currentRevision(),
  }));
  if (!value.ok) throw notCounter(name, value.stored);
  return { header: host.header(rev), value: value.value.toString() };
}
