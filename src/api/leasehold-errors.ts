/**
 * The errors of leasehold's own API (leasehold.v1; the list, with codes and
 * trailers, is in proto/leaseholdpb/leasehold.proto). The etcd API's errors
 * stay in errors.ts, word for word etcd's; these are ours, so their wording is
 * ours too: every message starts with "leasehold: " and names what to do or
 * who is in the way, and structured details travel as trailing metadata so a
 * client need not parse text.
 *
 * The `kind` is the stable name an SDK maps to one error class.
 */

import { Metadata, type ServiceError, status } from "@grpc/grpc-js";

/** Every error kind of leasehold.v1, with its gRPC status code. */
export const LEASEHOLD_ERROR_CODES = {
  /** Acquire without wait: another holder has the resource. */
  held: status.ALREADY_EXISTS,
  /** Renew or Release by someone other than the holder. */
  notHolder: status.PERMISSION_DENIED,
  /** Renew or Release of a lease (or holding) that does not exist. */
  notFound: status.NOT_FOUND,
  /** A fencing token that is not the resource's current one. */
  staleFence: status.FAILED_PRECONDITION,
  /** A malformed request. */
  invalid: status.INVALID_ARGUMENT,
  /** A wait that ended before it held. */
  waitEnded: status.DEADLINE_EXCEEDED,
  /** Counters.Add whose sum would leave int64: nothing changed (trailer: value). */
  counterOverflow: status.FAILED_PRECONDITION,
  /** A counter key holding something that is not decimal int64 text (written through the etcd API). */
  notCounter: status.FAILED_PRECONDITION,
  /** Semaphores.Acquire without wait: every permit is held (trailers: holders, permits). */
  semaphoreFull: status.ALREADY_EXISTS,
  /** Semaphores.Acquire naming other permits than the semaphore has (trailer: permits). */
  permitsMismatch: status.INVALID_ARGUMENT,
  /** Leases.Revoke of a holding nobody asked to release. */
  notRequested: status.FAILED_PRECONDITION,
  /** Leases.Revoke before the release request's deadline (trailer: requester). */
  beforeDeadline: status.FAILED_PRECONDITION,
} as const;

export type LeaseholdErrorKind = keyof typeof LEASEHOLD_ERROR_CODES;

/** The trailer that names the error kind (clients match it, not the text). */
export const ERROR_KIND_TRAILER = "leasehold-error";

/** An answer of leasehold.v1 that is an error; `details` go out as trailers. */
export class LeaseholdError extends Error {
  readonly code: status;
  constructor(
    readonly kind: LeaseholdErrorKind,
    message: string,
    readonly details: Readonly<Record<string, string>> = {},
  ) {
    super(`leasehold: ${message}`);
    this.code = LEASEHOLD_ERROR_CODES[kind];
  }

  /** The grpc-js error to answer. */
  toServiceError(): ServiceError {
    const metadata = new Metadata();
    metadata.set(ERROR_KIND_TRAILER, this.kind);
    for (const [k, v] of Object.entries(this.details)) metadata.set(k, v);
    return Object.assign(new Error(this.message), { code: this.code, details: this.message, metadata });
  }
}
