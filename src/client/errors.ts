/**
 * The SDK's typed errors: one class per error kind the server can answer,
 * matching the server catalogues (CONVENTIONS 8), plus the few the client
 * raises on its own (a lost lease, a stale fence seen locally, a connection
 * that failed).
 *
 * Contract of `toClientError(err)`, in this order of precedence:
 * 1. A leasehold.v1 error is recognized by its `leasehold-error` trailer (the
 *    kind; src/api/leasehold-errors.ts), never by its text; the other trailers
 *    become `details`, and the typed fields are parsed from them
 *    (ResourceHeldError: holder, lease-id, fencing-token, remaining-ms;
 *    StaleFenceError: holder, fencing-token; CounterOverflowError: value;
 *    SemaphoreFullError: holders, permits; PermitsMismatchError: permits).
 * 2. An etcd error is recognized by its exact status message, as clientv3's
 *    rpctypes and the etcd3 npm package do (src/api/errors.ts, ETCD_ERRORS).
 * 3. Otherwise the gRPC status code decides: CANCELLED → CancelledError,
 *    DEADLINE_EXCEEDED → DeadlineExceededError, UNAVAILABLE (no connection,
 *    connection reset, a proxy with no backend) → UnavailableError, anything
 *    else → UnknownError with the code kept.
 * Non-gRPC errors: an AbortSignal's reasons (AbortError → CancelledError,
 * TimeoutError → DeadlineExceededError), socket errors (ECONNREFUSED, …) →
 * UnavailableError, the rest → UnknownError. The original is kept as `cause`.
 *
 * `isRetryable(err)` says whether asking again (the same member after a
 * backoff, or another member) may succeed: transient cluster and connection
 * states yes; refusals by the data (held, not holder, not found, stale fence,
 * invalid, permissions) no.
 */

import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { ETCD_ERRORS, type EtcdErrorName, etcdErrorByMessage } from "../api/index.ts";
import {
  ERROR_KIND_TRAILER,
  LEASEHOLD_ERROR_CODES,
  LeaseholdError,
  type LeaseholdErrorKind,
} from "../api/leasehold-errors.ts";

/** Every kind a client error can have: leasehold.v1's kinds, then the others. */
export type ClientErrorKind =
  | LeaseholdErrorKind
  /** A catalogued etcd error (see `EtcdError.etcdName`). */
  | "etcd"
  /** The call was cancelled (by the caller's AbortSignal, or the server). */
  | "cancelled"
  /** The call's deadline passed before an answer. */
  | "deadlineExceeded"
  /** No connection to a member, or the member is going away. */
  | "unavailable"
  /** Raised by the client: a lease is no longer known to be held. */
  | "leaseLost"
  /** Anything else; `code` tells the gRPC status. */
  | "unknown";

/** What every error constructor takes besides its message. */
export interface ClientErrorOptions {
  /** Structured facts (for server errors: the trailing metadata). */
  readonly details?: Readonly<Record<string, string>>;
  /** The error this one was made from. */
  readonly cause?: unknown;
}

/**
 * The base of every SDK error. `code` is a gRPC status code (for errors the
 * client raises itself, the code the server would have used), `kind` the
 * stable name to switch on, `details` the structured facts.
 */
export class LeaseholdClientError extends Error {
  override name = "LeaseholdClientError";
  readonly kind: ClientErrorKind;
  readonly code: status;
  readonly details: Readonly<Record<string, string>>;
  constructor(
    message: string,
    init: ClientErrorOptions & { readonly kind: ClientErrorKind; readonly code: status },
  ) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.kind = init.kind;
    this.code = init.code;
    this.details = Object.freeze({ ...(init.details ?? {}) });
  }
}

// ---------------------------------------------------------------- leasehold.v1

/**
 * Acquire without wait: another holder has the resource. The fields come from
 * the trailers; each is undefined when the server did not send it (or sent
 * something unreadable). `remainingMs` is the holder's time left as the leader
 * saw it, -1 when unknown.
 */
export class ResourceHeldError extends LeaseholdClientError {
  override name = "ResourceHeldError";
  readonly holder: string | undefined;
  readonly leaseId: bigint | undefined;
  readonly fencingToken: number | undefined;
  readonly remainingMs: number;
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "held", code: LEASEHOLD_ERROR_CODES.held });
    this.holder = this.details.holder;
    this.leaseId = parseBigInt(this.details["lease-id"]);
    this.fencingToken = parseSafeInt(this.details["fencing-token"]);
    this.remainingMs = parseSafeInt(this.details["remaining-ms"]) ?? -1;
  }
}

/** Renew or Release by someone other than the holder; `holder` is the one who holds, if told. */
export class NotHolderError extends LeaseholdClientError {
  override name = "NotHolderError";
  readonly holder: string | undefined;
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "notHolder", code: LEASEHOLD_ERROR_CODES.notHolder });
    this.holder = this.details.holder;
  }
}

/** Renew or Release of a lease (or holding) that does not exist any more. */
export class LeaseNotFoundError extends LeaseholdClientError {
  override name = "LeaseNotFoundError";
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "notFound", code: LEASEHOLD_ERROR_CODES.notFound });
  }
}

/**
 * A fencing token that is not (or no longer) current. From the server:
 * `holder` and `fencingToken` name the current holding, if there is one. From
 * a FenceGuard: `resource`, the refused `staleToken` and the highest token
 * seen as `fencingToken`. Details keys: holder, fencing-token, resource,
 * stale-token.
 */
export class StaleFenceError extends LeaseholdClientError {
  override name = "StaleFenceError";
  readonly holder: string | undefined;
  readonly fencingToken: number | undefined;
  readonly resource: string | undefined;
  readonly staleToken: number | undefined;
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "staleFence", code: LEASEHOLD_ERROR_CODES.staleFence });
    this.holder = this.details.holder;
    this.fencingToken = parseSafeInt(this.details["fencing-token"]);
    this.resource = this.details.resource;
    this.staleToken = parseSafeInt(this.details["stale-token"]);
  }
}

/** A malformed request; the message names the field. */
export class InvalidArgumentError extends LeaseholdClientError {
  override name = "InvalidArgumentError";
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "invalid", code: LEASEHOLD_ERROR_CODES.invalid });
  }
}

/** Acquire with wait: the wait ended before the caller held the resource. */
export class WaitEndedError extends LeaseholdClientError {
  override name = "WaitEndedError";
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "waitEnded", code: LEASEHOLD_ERROR_CODES.waitEnded });
  }
}

/** Counters.Add whose sum would leave int64; nothing changed. `value` is the counter's current value. */
export class CounterOverflowError extends LeaseholdClientError {
  override name = "CounterOverflowError";
  readonly value: bigint | undefined;
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "counterOverflow", code: LEASEHOLD_ERROR_CODES.counterOverflow });
    this.value = parseBigInt(this.details.value);
  }
}

/** The counter's key holds something that is not decimal int64 text (written through the etcd API). */
export class NotCounterError extends LeaseholdClientError {
  override name = "NotCounterError";
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "notCounter", code: LEASEHOLD_ERROR_CODES.notCounter });
  }
}

/** Semaphores.Acquire without wait: every permit is held. `holders` is how many hold, of `permits`. */
export class SemaphoreFullError extends LeaseholdClientError {
  override name = "SemaphoreFullError";
  readonly holders: number | undefined;
  readonly permits: number | undefined;
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "semaphoreFull", code: LEASEHOLD_ERROR_CODES.semaphoreFull });
    this.holders = parseSafeInt(this.details.holders);
    this.permits = parseSafeInt(this.details.permits);
  }
}

/** Semaphores.Acquire naming other permits than the semaphore has; `permits` is what it has. */
export class PermitsMismatchError extends LeaseholdClientError {
  override name = "PermitsMismatchError";
  readonly permits: number | undefined;
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "permitsMismatch", code: LEASEHOLD_ERROR_CODES.permitsMismatch });
    this.permits = parseSafeInt(this.details.permits);
  }
}

/** Leases.Revoke of a holding nobody asked to release. */
export class ReleaseNotRequestedError extends LeaseholdClientError {
  override name = "ReleaseNotRequestedError";
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "notRequested", code: LEASEHOLD_ERROR_CODES.notRequested });
  }
}

/** Leases.Revoke before the release request's deadline; `requester` asked. */
export class BeforeDeadlineError extends LeaseholdClientError {
  override name = "BeforeDeadlineError";
  readonly requester: string | undefined;
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "beforeDeadline", code: LEASEHOLD_ERROR_CODES.beforeDeadline });
    this.requester = this.details.requester;
  }
}

/** The class of each leasehold.v1 kind (a new kind fails to compile until it has one). */
const LEASEHOLD_CLASSES: {
  readonly [K in LeaseholdErrorKind]: new (
    message: string,
    options?: ClientErrorOptions,
  ) => LeaseholdClientError;
} = {
  held: ResourceHeldError,
  notHolder: NotHolderError,
  notFound: LeaseNotFoundError,
  staleFence: StaleFenceError,
  invalid: InvalidArgumentError,
  waitEnded: WaitEndedError,
  counterOverflow: CounterOverflowError,
  notCounter: NotCounterError,
  semaphoreFull: SemaphoreFullError,
  permitsMismatch: PermitsMismatchError,
  notRequested: ReleaseNotRequestedError,
  beforeDeadline: BeforeDeadlineError,
};

/** Whether `s` names a leasehold.v1 error kind. */
export function isLeaseholdErrorKind(s: string): s is LeaseholdErrorKind {
  return Object.hasOwn(LEASEHOLD_ERROR_CODES, s);
}

/** The typed error for a leasehold.v1 `kind`. */
export function leaseholdClientError(
  kind: LeaseholdErrorKind,
  message: string,
  options: ClientErrorOptions = {},
): LeaseholdClientError {
  return new LEASEHOLD_CLASSES[kind](message, options);
}

// ---------------------------------------------------------------- etcd

/**
 * A catalogued etcd error. `etcdName` is its stable name in src/api/errors.ts
 * (`NoLeader`, `Compacted`, …; the Go identifier is
 * `ETCD_ERRORS[etcdName].etcdName`); code and message are etcd's, verbatim.
 * The common ones have their own subclasses; the rest are plain EtcdErrors.
 */
export class EtcdError extends LeaseholdClientError {
  override name = "EtcdError";
  readonly etcdName: EtcdErrorName;
  constructor(etcdName: EtcdErrorName, options: ClientErrorOptions = {}) {
    const spec = ETCD_ERRORS[etcdName];
    super(spec.message, { ...options, kind: "etcd", code: spec.code });
    this.etcdName = etcdName;
  }
}

/** "etcdserver: no leader": the cluster has no leader right now. Retryable. */
export class NoLeaderError extends EtcdError {
  override name = "NoLeaderError";
  constructor(options: ClientErrorOptions = {}) {
    super("NoLeader", options);
  }
}

/** "etcdserver: leader changed": the request met a leader change. Retryable. */
export class LeaderChangedError extends EtcdError {
  override name = "LeaderChangedError";
  constructor(options: ClientErrorOptions = {}) {
    super("LeaderChanged", options);
  }
}

/** The etcd errors that say "request timed out" (with or without a likely cause). */
export type EtcdTimeoutName =
  | "Timeout"
  | "TimeoutDueToLeaderFail"
  | "TimeoutDueToConnectionLost"
  | "TimeoutWaitAppliedIndex";

const TIMEOUT_NAMES: ReadonlySet<EtcdErrorName> = new Set<EtcdTimeoutName>([
  "Timeout",
  "TimeoutDueToLeaderFail",
  "TimeoutDueToConnectionLost",
  "TimeoutWaitAppliedIndex",
]);

/** The server gave up waiting for the request to commit or apply; its outcome is unknown. Retryable. */
export class TimeoutError extends EtcdError {
  override name = "TimeoutError";
  constructor(etcdName: EtcdTimeoutName = "Timeout", options: ClientErrorOptions = {}) {
    super(etcdName, options);
  }
}

/** etcd's two texts for a refused permission (the Maintenance admin check sends the auth package's). */
export type EtcdPermissionDeniedName = "PermissionDenied" | "AuthPlainPermissionDenied";

/** The authenticated user may not do this. Not retryable. */
export class PermissionDeniedError extends EtcdError {
  override name = "PermissionDeniedError";
  constructor(etcdName: EtcdPermissionDeniedName = "PermissionDenied", options: ClientErrorOptions = {}) {
    super(etcdName, options);
  }
}

/** The typed error for a catalogued etcd error. */
export function etcdClientError(etcdName: EtcdErrorName, options: ClientErrorOptions = {}): EtcdError {
  if (etcdName === "NoLeader") return new NoLeaderError(options);
  if (etcdName === "LeaderChanged") return new LeaderChangedError(options);
  if (TIMEOUT_NAMES.has(etcdName)) return new TimeoutError(etcdName as EtcdTimeoutName, options);
  if (etcdName === "PermissionDenied" || etcdName === "AuthPlainPermissionDenied")
    return new PermissionDeniedError(etcdName, options);
  return new EtcdError(etcdName, options);
}

/**
 * The etcd errors worth another try: no leader or a leader change, timeouts,
 * a member stopping or unhealthy, a follower or learner that cannot serve the
 * call (another member can), and rate limiting. Mutations carry an
 * idempotency key, so a retry after an unknown outcome applies once.
 */
const RETRYABLE_ETCD: ReadonlySet<EtcdErrorName> = new Set<EtcdErrorName>([
  "NoLeader",
  "NotLeader",
  "LeaderChanged",
  "Stopped",
  "Unhealthy",
  "NotSupportedForLearner",
  "RequestTooManyRequests",
  ...TIMEOUT_NAMES,
]);

// ---------------------------------------------------------------- gRPC and the client

/** The call was cancelled (the caller's AbortSignal, or a server-side cancel). */
export class CancelledError extends LeaseholdClientError {
  override name = "CancelledError";
  constructor(message = "leasehold: the call was cancelled", options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "cancelled", code: status.CANCELLED });
  }
}

/** The call's deadline passed before an answer; a mutation's outcome is unknown. */
export class DeadlineExceededError extends LeaseholdClientError {
  override name = "DeadlineExceededError";
  constructor(message = "leasehold: the call's deadline passed", options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "deadlineExceeded", code: status.DEADLINE_EXCEEDED });
  }
}

/** No connection to a member (refused, reset, no route), or no member answered. Retryable. */
export class UnavailableError extends LeaseholdClientError {
  override name = "UnavailableError";
  constructor(message = "leasehold: no member is reachable", options: ClientErrorOptions = {}) {
    super(message, { ...options, kind: "unavailable", code: status.UNAVAILABLE });
  }
}

/** Any other failure; `code` is the gRPC status it came with (UNKNOWN when none). */
export class UnknownError extends LeaseholdClientError {
  override name = "UnknownError";
  constructor(message: string, options: ClientErrorOptions & { readonly code?: status } = {}) {
    super(message, { ...options, kind: "unknown", code: options.code ?? status.UNKNOWN });
  }
}

/** The states in which a lease is no longer known to be held (lease-keeper.ts). */
export type LostLeaseState = "jeopardy" | "expired" | "released" | "closed";

/**
 * Raised by the client, never sent by a server: the lease is no longer known
 * to be held, so work tied to it must stop. `state` says why: in jeopardy it
 * may still come back; expired, released and closed are final. It is the
 * abort reason of a lease's `signal`.
 */
export class LeaseLostError extends LeaseholdClientError {
  override name = "LeaseLostError";
  readonly state: LostLeaseState;
  constructor(state: LostLeaseState, options: ClientErrorOptions = {}) {
    super(`leasehold: the lease is no longer valid (${LOST_REASONS[state]})`, {
      ...options,
      kind: "leaseLost",
      code: status.ABORTED,
    });
    this.state = state;
  }
}

const LOST_REASONS: Readonly<Record<LostLeaseState, string>> = {
  jeopardy: "jeopardy: no renewal was answered before its local deadline; still trying",
  expired: "expired: the grace period ended or the server no longer has it",
  released: "released by its holder",
  closed: "its keeper was closed",
};

// ---------------------------------------------------------------- conversion

/** Socket error codes that mean "could not talk to that member". */
const CONNECTION_ERRNOS: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/** The last gRPC status code. */
const STATUS_MAX = status.UNAUTHENTICATED;

/** Whether `err` looks like a grpc-js ServiceError (a status with code and details). */
export function isServiceError(err: unknown): err is ServiceError {
  if (!(err instanceof Error)) return false;
  const e = err as Partial<ServiceError>;
  return (
    typeof e.code === "number" &&
    Number.isInteger(e.code) &&
    e.code >= 0 &&
    e.code <= STATUS_MAX &&
    typeof e.details === "string"
  );
}

/** Transport headers grpc-js leaves in a status's metadata; they are not facts about the error. */
function isTransportHeader(key: string): boolean {
  return key === "content-type" || key === "date" || key === "user-agent" || /^(grpc-|:)/.test(key);
}

/**
 * The trailers as strings (binary `-bin` values and transport headers are
 * left out); the kind trailer is split off.
 */
function trailersOf(metadata: unknown): { kind: string | undefined; details: Record<string, string> } {
  const details: Record<string, string> = {};
  if (!(metadata instanceof Metadata)) return { kind: undefined, details };
  let kind: string | undefined;
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (typeof value !== "string" || isTransportHeader(key)) continue;
    if (key === ERROR_KIND_TRAILER) kind = value;
    else details[key] = value;
  }
  return { kind, details };
}

/** A gRPC status answered by a server (or made up by grpc-js for a failed connection). */
function fromServiceError(err: ServiceError): LeaseholdClientError {
  const message = err.details === "" ? err.message : err.details;
  const { kind, details } = trailersOf(err.metadata);
  const options = { details, cause: err };
  if (kind !== undefined && isLeaseholdErrorKind(kind)) return leaseholdClientError(kind, message, options);
  const etcdName = etcdErrorByMessage(err.details);
  if (etcdName !== undefined) return etcdClientError(etcdName, options);
  switch (err.code) {
    case status.CANCELLED:
      return new CancelledError(message, options);
    case status.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(message, options);
    case status.UNAVAILABLE:
      return new UnavailableError(message, options);
    default:
      return new UnknownError(message, { ...options, code: err.code });
  }
}

/**
 * The typed client error for anything a call can fail with (see the header
 * for the rules). Idempotent: a LeaseholdClientError is returned as it is.
 */
export function toClientError(err: unknown): LeaseholdClientError {
  if (err instanceof LeaseholdClientError) return err;
  if (err instanceof LeaseholdError)
    return leaseholdClientError(err.kind, err.message, { details: err.details, cause: err });
  if (isServiceError(err)) return fromServiceError(err);
  if (err instanceof Error) {
    if (err.name === "AbortError") return new CancelledError(undefined, { cause: err });
    if (err.name === "TimeoutError") return new DeadlineExceededError(undefined, { cause: err });
    const errno = (err as { code?: unknown }).code;
    if (typeof errno === "string" && CONNECTION_ERRNOS.has(errno))
      return new UnavailableError(`leasehold: ${err.message}`, { cause: err });
    return new UnknownError(err.message, { cause: err });
  }
  return new UnknownError(String(err), { cause: err });
}

/**
 * Whether another try may succeed: UnavailableError and the transient etcd
 * errors (no leader, leader changed, not leader, timeouts, stopped,
 * unhealthy, learner, too many requests) yes. Everything else no: the data's
 * refusals (every leasehold.v1 kind: held, not holder, not found, stale
 * fence, invalid, semaphore full, counter errors; and permissions),
 * a lost lease, a cancel, and DeadlineExceeded (the caller's own bound is
 * spent; retrying under a fresh deadline is the caller's decision).
 */
export function isRetryable(err: unknown): boolean {
  const e = toClientError(err);
  if (e.kind === "unavailable") return true;
  if (e instanceof EtcdError) return RETRYABLE_ETCD.has(e.etcdName);
  return false;
}

/** Whether `err` says the server does not know the caller's auth token (expired, or a member restarted). */
export function isTokenRefused(err: unknown): boolean {
  const e = toClientError(err);
  return (
    e instanceof EtcdError &&
    (e.etcdName === "InvalidAuthToken" || e.etcdName === "AuthPlainInvalidAuthToken")
  );
}

/** A decimal (or 0x-hex) integer, else undefined. */
function parseBigInt(s: string | undefined): bigint | undefined {
  if (s === undefined || !/^(-?\d+|0x[0-9a-fA-F]+)$/.test(s)) return undefined;
  return BigInt(s);
}

/** A decimal safe integer, else undefined. */
function parseSafeInt(s: string | undefined): number | undefined {
  if (s === undefined || !/^-?\d+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}
