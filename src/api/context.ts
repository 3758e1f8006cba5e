/**
 * What every etcd service implementation (server.ts and the files beside it:
 * lock.ts, election.ts, maintenance.ts, auth.ts) gets from the API server:
 * the member, etcd's response header, the one way to turn a handler into a
 * grpc-js unary method, and the one mapping of failures to etcd's errors.
 *
 * Contract:
 * - A handler answers a response message or throws; it never calls grpc-js
 *   callbacks itself. `ErrorAnswer` carries an etcd catalogue error; a
 *   `RequestRejected` (convert.ts) and a `MemberError` are mapped too;
 *   anything else is logged and answered "etcdserver: internal error".
 * - `caller(call)` is who makes the call (auth): the user name from the
 *   call's token or its client certificate's CN, or undefined when auth is
 *   off. It throws `ErrorAnswer` for a bad token.
 */

import type {
  Metadata,
  MethodDefinition,
  ServerDuplexStream,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceError,
  sendUnaryData,
} from "@grpc/grpc-js";
import type { Member, WriteOutcome } from "../server/member.ts";
import type { ClientCommand, CommandAuth } from "../state/index.ts";
import type { EtcdErrorName } from "./errors.ts";
import type { WireMessage } from "./proto.ts";

type W = WireMessage;

/** A grpc-js unary method implementation. */
export type Unary = (call: ServerUnaryCall<W, W>, callback: sendUnaryData<W>) => void;
/** A grpc-js server-streaming method implementation. */
export type ServerStream = (call: ServerWritableStream<W, W>) => void;
/** A grpc-js bidirectional method implementation. */
export type Bidi = (call: ServerDuplexStream<W, W>) => void;

/** The parts of a call a handler may look at (unary, streaming, or the JSON gateway's). */
export interface CallInfo {
  readonly metadata: Metadata;
  getPeer(): string;
  /** grpc-js: the client certificate on a TLS connection (`sslPeerCertificate`). */
  getAuthContext?(): {
    readonly sslPeerCertificate?: { readonly subject?: { readonly CN?: string | string[] } };
  };
  /**
   * grpc-js: true once the client cancelled the call or its deadline passed;
   * "cancelled" is emitted then. Handlers that wait (Lock, Campaign) stop and
   * clean up on it. Absent (the JSON gateway, for now): never cancelled.
   */
  readonly cancelled?: boolean;
  once?(event: "cancelled", listener: () => void): unknown;
  removeListener?(event: "cancelled", listener: () => void): unknown;
}

/** One permission a request needs (etcd's authStore.IsRangePermitted / IsPutPermitted). */
export interface PermissionCheck {
  readonly key: Uint8Array;
  /** etcd's range_end: empty for one key, "\0" for every key from `key` on. */
  readonly rangeEnd?: Uint8Array | undefined;
  readonly type: "read" | "write";
}

export interface ApiHost {
  readonly member: Member;
  /** etcd's ResponseHeader at `rev` (default: the member's current revision). */
  header(rev?: number): W;
  /**
   * A unary method from `handler`. On a learner only what `learnerOk` allows
   * is served (etcd 3.4: Status and serializable Range).
   */
  unary(handler: (w: W, call: CallInfo) => Promise<W>, learnerOk?: (w: W) => boolean): Unary;
  /**
   * etcd refuses every stream on a learner ("rpc not supported for learner",
   * which clients take as "try another member"): ends `call` so if this
   * member is one, and answers whether it did.
   */
  refuseLearnerStream(call: NodeJS.EventEmitter): boolean;
  /** The etcd error for a failure (see the header). */
  toServiceError(err: unknown): ServiceError;
  log(level: "info" | "warn" | "error", msg: string): void;
  /**
   * Checks that the caller (its token, or its client certificate's CN) may do
   * all of `checks`; throws an ErrorAnswer (PermissionDenied, InvalidAuthToken,
   * UserEmpty, ...) if not. No checks: only that there is a caller (etcd's
   * requireAuthInfo). Resolves at once, with undefined, while auth is disabled.
   * Resolves with the caller: put it as `auth` on every command the call then
   * writes (`{ ...command, auth }`), since apply checks writes again for the
   * caller they carry and refuses one without while auth is on ("user name is
   * empty"). Reads made after it are not checked again.
   */
  authorize(call: CallInfo, checks: readonly PermissionCheck[]): Promise<CommandAuth | undefined>;
  /** Every method registered, by gRPC path ("/etcdserverpb.KV/Range"): the JSON gateway calls them. */
  readonly methods: ReadonlyMap<string, RegisteredMethod>;
  /**
   * Calls `listener` after every Ready in which the member applied entries
   * (`restored` false) or replaced its state with a snapshot (`restored` true:
   * the watch hub is a new one; watchers on the old one are gone). Returns
   * the unsubscribe. Lock and Election waiters re-check their keys then.
   */
  subscribeApplied(listener: (restored: boolean) => void): () => void;
  /**
   * Proposes a client command as the API's own writes are proposed: checked
   * against the space quota first (a write that would pass it raises NOSPACE
   * and fails), then through Raft. Services write through this, never
   * `member.write` directly.
   */
  propose(command: ClientCommand): Promise<WriteOutcome>;
}

/** A registered method: its definition (serializers, streaming flags) and its implementation. */
export interface RegisteredMethod {
  readonly definition: MethodDefinition<W, W>;
  readonly implementation: (...args: never[]) => void;
}

/** A handler's way to answer an etcd error. */
export class ErrorAnswer extends Error {
  constructor(readonly etcdError: EtcdErrorName) {
    super(etcdError);
  }
}
