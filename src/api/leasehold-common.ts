/**
 * What the leasehold.v1 services (leases.ts, semaphores.ts, counters.ts)
 * share: the session metadata (ARCHITECTURE rule 7), the validation of
 * holders and lease ids, and the small steps every claim-based service takes.
 */

import type { ClientSession, CommandAuth, CommandResult, LeaseId } from "../state/index.ts";
import { holderProblem, leaseId, SESSION_CLIENT_ID_LENGTH_MAX } from "../state/index.ts";
import type { ApiHost, CallInfo } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import { writeResultToWire } from "./convert.ts";
import { LeaseholdError } from "./leasehold-errors.ts";
import type { WireMessage } from "./proto.ts";
import { int64FromWire } from "./proto.ts";

type W = WireMessage;

/** The metadata that names a client session (ARCHITECTURE rule 7): a retry with the same pair applies once. */
export const SESSION_CLIENT_ID_HEADER = "leasehold-client-id";
export const SESSION_SEQ_HEADER = "leasehold-seq";

/**
 * The session a mutation carries, if any: `leasehold-client-id` (1 to 128 characters) and
 * `leasehold-seq` (a positive integer), both or neither. The state machine then applies it at
 * most once and answers a retry with the stored result (src/state/session.ts).
 */
export function sessionOf(call: CallInfo): { session?: ClientSession } {
  const id = call.metadata.get(SESSION_CLIENT_ID_HEADER)[0];
  const seq = call.metadata.get(SESSION_SEQ_HEADER)[0];
  if (id === undefined && seq === undefined) return {};
  const clientId = typeof id === "string" ? id : "";
  const n = typeof seq === "string" && /^[1-9][0-9]{0,15}$/.test(seq) ? Number(seq) : 0;
  if (
    clientId.length === 0 ||
    clientId.length > SESSION_CLIENT_ID_LENGTH_MAX ||
    !Number.isSafeInteger(n) ||
    n < 1
  )
    throw new LeaseholdError(
      "invalid",
      `${SESSION_CLIENT_ID_HEADER} (1 to ${SESSION_CLIENT_ID_LENGTH_MAX} characters) and ${SESSION_SEQ_HEADER} (a positive integer) go together`,
    );
  return { session: { clientId, seq: n } };
}

/** A session's answer that the request was not applied now and will not be: thrown as an error. */
export function sessionRefusal(r: CommandResult): void {
  if (r.kind === "sessionExpired")
    throw new LeaseholdError(
      "invalid",
      "the client session was forgotten: open a new one (a new client id, seq 1)",
    );
  if (r.kind === "sessionStale")
    throw new LeaseholdError("invalid", `the client session has answered a newer request (seq ${r.lastSeq})`);
}

export function holderOf(w: W): string {
  const v = typeof w.holder === "string" ? w.holder : "";
  const problem = holderProblem(v);
  if (problem !== undefined) throw new LeaseholdError("invalid", `holder: ${problem}`);
  return v;
}

export function leaseOf(w: W): LeaseId {
  const id = int64FromWire(w.lease_id ?? "0");
  if (id <= 0n) throw new LeaseholdError("invalid", "lease_id: expected a lease id above 0");
  return leaseId(id);
}

export function hexLease(id: LeaseId): string {
  return id.toString(16); // as etcdctl prints lease ids
}

/** The leader's remaining time of `lease` in ms, -1 when gone or unknown. */
export async function remainingMs(host: ApiHost, lease: LeaseId): Promise<number> {
  try {
    const t = await host.member.leaseTtl(lease);
    return t.remainingMs;
  } catch {
    return -1;
  }
}

/** The etcd error of a write that failed, thrown. */
export function throwFailed(r: CommandResult): never {
  const answer = writeResultToWire(r, () => ({}));
  throw new ErrorAnswer(typeof answer === "string" ? answer : "NotCapable");
}

/** Revokes a waiter's lease after its wait ended without holding; failures are logged. */
export async function revokeQuietly(
  host: ApiHost,
  id: LeaseId,
  auth: CommandAuth | undefined,
): Promise<void> {
  try {
    await host.propose({ type: "leaseRevoke", id, ...(auth === undefined ? {} : { auth }) });
  } catch (err) {
    host.log("warn", `leasehold: could not revoke the claim of lease ${hexLease(id)}: ${String(err)}`);
  }
}
