/**
 * The SDK's typed errors: every leasehold.v1 kind and every catalogued etcd
 * error maps from the grpc-js ServiceError a client receives to its class, with
 * the trailers parsed; unknown statuses, aborts and socket errors map to the
 * generic classes; isRetryable splits transient from final.
 */

import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { ETCD_ERROR_NAMES, ETCD_ERRORS, etcdServiceError } from "../../src/api/index.ts";
import {
  LEASEHOLD_ERROR_CODES,
  LeaseholdError,
  type LeaseholdErrorKind,
} from "../../src/api/leasehold-errors.ts";
import {
  BeforeDeadlineError,
  CancelledError,
  CounterOverflowError,
  DeadlineExceededError,
  EtcdError,
  InvalidArgumentError,
  isRetryable,
  LeaderChangedError,
  LeaseholdClientError,
  LeaseLostError,
  LeaseNotFoundError,
  NoLeaderError,
  NotCounterError,
  NotHolderError,
  PermissionDeniedError,
  PermitsMismatchError,
  ReleaseNotRequestedError,
  ResourceHeldError,
  SemaphoreFullError,
  StaleFenceError,
  TimeoutError,
  toClientError,
  UnavailableError,
  UnknownError,
  WaitEndedError,
} from "../../src/client/errors.ts";

/** A ServiceError as grpc-js's client builds it (callErrorFromStatus): message "<code> <NAME>: <details>". */
function received(code: status, details: string, trailers: Record<string, string> = {}): ServiceError {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(trailers)) metadata.set(k, v);
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata });
}

/** What the server sends for a leasehold.v1 error, as the client receives it. */
function receivedLeasehold(kind: LeaseholdErrorKind, message: string, details: Record<string, string> = {}) {
  const sent = new LeaseholdError(kind, message, details).toServiceError();
  return received(sent.code, sent.details, { ...sent.metadata.getMap() } as Record<string, string>);
}

describe("leasehold.v1 kinds", () => {
  const classes: Record<LeaseholdErrorKind, new (...a: never[]) => LeaseholdClientError> = {
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

  for (const kind of Object.keys(LEASEHOLD_ERROR_CODES) as LeaseholdErrorKind[]) {
    it(`maps kind ${kind} by its trailer to ${classes[kind].name}`, () => {
      const err = receivedLeasehold(kind, `something about ${kind}`);
      const e = toClientError(err);
      expect(e).toBeInstanceOf(classes[kind]);
      expect(e).toBeInstanceOf(LeaseholdClientError);
      expect(e.kind).toBe(kind);
      expect(e.code).toBe(LEASEHOLD_ERROR_CODES[kind]);
      expect(e.message).toBe(`leasehold: something about ${kind}`);
      expect(e.name).toBe(classes[kind].name);
      expect(e.cause).toBe(err);
      expect(e.details).not.toHaveProperty("leasehold-error");
    });
  }

  it("parses ResourceHeldError's holder, lease id, fencing token and remaining time from the trailers", () => {
    const e = toClientError(
      receivedLeasehold("held", 'resource "db" is held by "alice" (lease 0x7fff0000000000aa, 4.5 s left)', {
        holder: "alice",
        "lease-id": "9223090561878065322",
        "fencing-token": "42",
        "remaining-ms": "4500",
      }),
    );
    expect(e).toBeInstanceOf(ResourceHeldError);
    const held = e as ResourceHeldError;
    expect(held.holder).toBe("alice");
    expect(held.leaseId).toBe(9223090561878065322n);
    expect(held.fencingToken).toBe(42);
    expect(held.remainingMs).toBe(4500);
    expect(held.details).toEqual({
      holder: "alice",
      "lease-id": "9223090561878065322",
      "fencing-token": "42",
      "remaining-ms": "4500",
    });
  });

  it("keeps only the error's own trailers in details, not transport headers", () => {
    const err = receivedLeasehold("notHolder", "not yours", { holder: "carol" });
    err.metadata.set("content-type", "application/grpc+proto");
    err.metadata.set("date", "Tue, 24 Nov 2026 05:28:55 GMT");
    err.metadata.set("grpc-accept-encoding", "identity");
    err.metadata.set("trace-bin", Buffer.from([1, 2]));
    expect(toClientError(err).details).toEqual({ holder: "carol" });
  });

  it("leaves ResourceHeldError's fields unknown when the trailers are missing or malformed", () => {
    const held = toClientError(
      receivedLeasehold("held", "held", { "lease-id": "zz", "fencing-token": "1.5" }),
    ) as ResourceHeldError;
    expect(held.holder).toBeUndefined();
    expect(held.leaseId).toBeUndefined();
    expect(held.fencingToken).toBeUndefined();
    expect(held.remainingMs).toBe(-1);
  });

  it("gives NotHolderError the actual holder and StaleFenceError the current holding", () => {
    const nh = toClientError(receivedLeasehold("notHolder", "not yours", { holder: "carol" }));
    expect((nh as NotHolderError).holder).toBe("carol");
    const sf = toClientError(
      receivedLeasehold("staleFence", "fencing token 3 is not current", {
        holder: "bob",
        "fencing-token": "17",
      }),
    ) as StaleFenceError;
    expect(sf.holder).toBe("bob");
    expect(sf.fencingToken).toBe(17);
    const nobody = toClientError(receivedLeasehold("staleFence", "nobody holds it")) as StaleFenceError;
    expect(nobody.holder).toBeUndefined();
    expect(nobody.fencingToken).toBeUndefined();
  });

  it("parses the counter and semaphore trailers", () => {
    const overflow = toClientError(
      receivedLeasehold("counterOverflow", "would leave int64", { value: "9223372036854775800" }),
    ) as CounterOverflowError;
    expect(overflow.value).toBe(9223372036854775800n);
    const full = toClientError(
      receivedLeasehold("semaphoreFull", "all 3 permits are held", { holders: "3", permits: "3" }),
    ) as SemaphoreFullError;
    expect([full.holders, full.permits]).toEqual([3, 3]);
    const mismatch = toClientError(
      receivedLeasehold("permitsMismatch", "it has 5 permits", { permits: "5" }),
    ) as PermitsMismatchError;
    expect(mismatch.permits).toBe(5);
  });

  it("converts the server's own LeaseholdError (in-process calls) the same way", () => {
    const e = toClientError(new LeaseholdError("notHolder", "x", { holder: "dave" }));
    expect(e).toBeInstanceOf(NotHolderError);
    expect(e.message).toBe("leasehold: x");
    expect((e as NotHolderError).holder).toBe("dave");
  });

  it("trusts the trailer, not the code or text: DEADLINE_EXCEEDED with kind waitEnded is WaitEnded", () => {
    expect(toClientError(receivedLeasehold("waitEnded", "the wait ended"))).toBeInstanceOf(WaitEndedError);
    expect(toClientError(received(status.DEADLINE_EXCEEDED, "leasehold: the wait ended"))).toBeInstanceOf(
      DeadlineExceededError,
    );
  });

  it("does not take an unknown kind trailer for a known one", () => {
    const e = toClientError(
      received(status.ABORTED, "leasehold: new", { "leasehold-error": "fromTheFuture" }),
    );
    expect(e).toBeInstanceOf(UnknownError);
    expect(e.code).toBe(status.ABORTED);
  });
});

describe("etcd errors", () => {
  const special: Partial<Record<string, new (...a: never[]) => EtcdError>> = {
    NoLeader: NoLeaderError,
    LeaderChanged: LeaderChangedError,
    Timeout: TimeoutError,
    TimeoutDueToLeaderFail: TimeoutError,
    TimeoutDueToConnectionLost: TimeoutError,
    TimeoutWaitAppliedIndex: TimeoutError,
    PermissionDenied: PermissionDeniedError,
    AuthPlainPermissionDenied: PermissionDeniedError,
  };

  it("maps every catalogued etcd error by its exact message, keeping its stable name and code", () => {
    for (const name of ETCD_ERROR_NAMES) {
      const spec = ETCD_ERRORS[name];
      const e = toClientError(received(spec.code, spec.message));
      expect(e, name).toBeInstanceOf(EtcdError);
      expect(e, name).toBeInstanceOf(special[name] ?? EtcdError);
      if (special[name] === undefined) expect(e.constructor, name).toBe(EtcdError);
      expect((e as EtcdError).etcdName).toBe(name);
      expect(e.kind).toBe("etcd");
      expect(e.code).toBe(spec.code);
      expect(e.message).toBe(spec.message);
    }
  });

  it("maps the server-side etcdServiceError objects too", () => {
    expect(toClientError(etcdServiceError("NoLeader"))).toBeInstanceOf(NoLeaderError);
    expect(toClientError(etcdServiceError("Compacted"))).toMatchObject({ etcdName: "Compacted" });
  });

  it("matches the text exactly, as etcd clients do: a reworded message is not an etcd error", () => {
    expect(toClientError(received(status.UNAVAILABLE, "etcdserver: no leader!"))).toBeInstanceOf(
      UnavailableError,
    );
    expect(toClientError(received(status.UNAVAILABLE, "etcdserver: no leader"))).toBeInstanceOf(
      NoLeaderError,
    );
  });

  it("builds the typed classes directly with etcd's text", () => {
    expect(new NoLeaderError().message).toBe("etcdserver: no leader");
    expect(new TimeoutError("TimeoutDueToLeaderFail").code).toBe(status.UNAVAILABLE);
    expect(new PermissionDeniedError().code).toBe(status.PERMISSION_DENIED);
  });
});

describe("gRPC statuses and other failures", () => {
  it("maps CANCELLED, DEADLINE_EXCEEDED and UNAVAILABLE without a kind to their classes", () => {
    expect(toClientError(received(status.CANCELLED, "Cancelled on client"))).toBeInstanceOf(CancelledError);
    expect(toClientError(received(status.DEADLINE_EXCEEDED, "Deadline exceeded"))).toBeInstanceOf(
      DeadlineExceededError,
    );
    const u = toClientError(
      received(status.UNAVAILABLE, "No connection established. Last error: ECONNREFUSED"),
    );
    expect(u).toBeInstanceOf(UnavailableError);
    expect(u.message).toBe("No connection established. Last error: ECONNREFUSED");
  });

  it("keeps any other status as UnknownError with its code", () => {
    const e = toClientError(received(status.UNIMPLEMENTED, "unknown service leasehold.v1.Nope"));
    expect(e).toBeInstanceOf(UnknownError);
    expect(e.code).toBe(status.UNIMPLEMENTED);
    expect(e.kind).toBe("unknown");
  });

  it("maps abort reasons, socket errors and anything else", () => {
    expect(toClientError(new DOMException("aborted", "AbortError"))).toBeInstanceOf(CancelledError);
    expect(toClientError(AbortSignal.abort().reason)).toBeInstanceOf(CancelledError);
    expect(toClientError(new DOMException("t", "TimeoutError"))).toBeInstanceOf(DeadlineExceededError);
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
    expect(toClientError(refused)).toBeInstanceOf(UnavailableError);
    expect(toClientError(new Error("boom"))).toMatchObject({ kind: "unknown", code: status.UNKNOWN });
    expect(toClientError("a string")).toMatchObject({ kind: "unknown", message: "a string" });
  });

  it("returns a client error as it is", () => {
    const e = new LeaseLostError("jeopardy");
    expect(toClientError(e)).toBe(e);
    expect(e.state).toBe("jeopardy");
    expect(e.message).toMatch(/^leasehold: the lease is no longer valid \(jeopardy/);
  });
});

describe("isRetryable", () => {
  it("says yes to unavailable, no leader, leader changed and etcd's timeouts", () => {
    for (const e of [
      received(status.UNAVAILABLE, "No connection established"),
      received(status.UNAVAILABLE, ETCD_ERRORS.NoLeader.message),
      received(status.UNAVAILABLE, ETCD_ERRORS.LeaderChanged.message),
      received(status.UNAVAILABLE, ETCD_ERRORS.Timeout.message),
      received(status.UNAVAILABLE, ETCD_ERRORS.TimeoutDueToLeaderFail.message),
      received(status.UNAVAILABLE, ETCD_ERRORS.TimeoutDueToConnectionLost.message),
      received(status.UNAVAILABLE, ETCD_ERRORS.Stopped.message),
      Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }),
    ]) {
      expect(isRetryable(e), e.message).toBe(true);
    }
  });

  it("says no to the data's refusals, permissions, cancels, deadlines and a lost lease", () => {
    for (const kind of Object.keys(LEASEHOLD_ERROR_CODES) as LeaseholdErrorKind[]) {
      expect(isRetryable(receivedLeasehold(kind, "no")), kind).toBe(false);
    }
    for (const e of [
      received(status.PERMISSION_DENIED, ETCD_ERRORS.PermissionDenied.message),
      received(status.INVALID_ARGUMENT, ETCD_ERRORS.AuthFailed.message),
      received(status.OUT_OF_RANGE, ETCD_ERRORS.Compacted.message),
      received(status.CANCELLED, "Cancelled on client"),
      received(status.DEADLINE_EXCEEDED, "Deadline exceeded"),
      received(status.INTERNAL, "boom"),
      new LeaseLostError("expired"),
      new Error("boom"),
    ]) {
      expect(isRetryable(e), e.message).toBe(false);
    }
  });
});
