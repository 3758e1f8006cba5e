/**
 * The one catalogue of the errors leasehold answers on the etcd v3 gRPC API
 * (CONVENTIONS 8), and the fixed watch cancel reasons.
 *
 * Contract: each entry is a wire fact of etcd v3.4 (release-3.4, checked against
 * v3.4.45): the gRPC status code and the exact status message. Clients match the
 * message text to typed errors (clientv3 rpctypes.Error, the etcd3 npm package),
 * so a message is never reworded; test/api/testdata/errors.golden pins them all.
 * Sources:
 * - `rpctypes.*`: etcdserver/api/v3rpc/rpctypes/error.go. Entries marked
 *   `since` appeared in a 3.4 patch release, not in 3.4.0.
 * - `concurrency.*`, `v3election.*`: errors the v3election server returns as
 *   plain Go errors, which grpc-go sends as code Unknown with the error text.
 * The stable name of an entry is etcd's Go identifier without its prefix
 * (`ErrGRPCEmptyKey` → `EmptyKey`); it never changes once published.
 */

import { status as GrpcStatus, Metadata, type ServiceError } from "@grpc/grpc-js";

/** One error: where etcd defines it, its gRPC status code and its exact message. */
export interface EtcdErrorSpec {
  /** The Go identifier in etcd, qualified by its package. */
  readonly etcdName: string;
  readonly code: GrpcStatus;
  /** The gRPC status message, byte for byte. */
  readonly message: string;
  /** The first 3.4 patch release that has it, if not 3.4.0. */
  readonly since?: string;
}

const S = GrpcStatus;

/** Every etcd error leasehold may answer, by stable name, in etcd's order. */
export const ETCD_ERRORS = {
  // Request validation and the key-value store.
  EmptyKey: {
    etcdName: "rpctypes.ErrGRPCEmptyKey",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: key is not provided",
  },
  KeyNotFound: {
    etcdName: "rpctypes.ErrGRPCKeyNotFound",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: key not found",
  },
  ValueProvided: {
    etcdName: "rpctypes.ErrGRPCValueProvided",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: value is provided",
  },
  LeaseProvided: {
    etcdName: "rpctypes.ErrGRPCLeaseProvided",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: lease is provided",
  },
  TooManyOps: {
    etcdName: "rpctypes.ErrGRPCTooManyOps",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: too many operations in txn request",
  },
  DuplicateKey: {
    etcdName: "rpctypes.ErrGRPCDuplicateKey",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: duplicate key given in txn request",
  },
  Compacted: {
    etcdName: "rpctypes.ErrGRPCCompacted",
    code: S.OUT_OF_RANGE,
    message: "etcdserver: mvcc: required revision has been compacted",
  },
  FutureRev: {
    etcdName: "rpctypes.ErrGRPCFutureRev",
    code: S.OUT_OF_RANGE,
    message: "etcdserver: mvcc: required revision is a future revision",
  },
  NoSpace: {
    etcdName: "rpctypes.ErrGRPCNoSpace",
    code: S.RESOURCE_EXHAUSTED,
    message: "etcdserver: mvcc: database space exceeded",
  },

  // Leases.
  LeaseNotFound: {
    etcdName: "rpctypes.ErrGRPCLeaseNotFound",
    code: S.NOT_FOUND,
    message: "etcdserver: requested lease not found",
  },
  LeaseExist: {
    etcdName: "rpctypes.ErrGRPCLeaseExist",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: lease already exists",
  },
  LeaseTTLTooLarge: {
    etcdName: "rpctypes.ErrGRPCLeaseTTLTooLarge",
    code: S.OUT_OF_RANGE,
    message: "etcdserver: too large lease TTL",
  },

  // Watch: the status of a Watch stream the client cancelled.
  WatchCanceled: {
    etcdName: "rpctypes.ErrGRPCWatchCanceled",
    code: S.CANCELLED,
    message: "etcdserver: watch canceled",
    since: "v3.4.16",
  },

  // Membership.
  MemberExist: {
    etcdName: "rpctypes.ErrGRPCMemberExist",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: member ID already exist",
  },
  PeerURLExist: {
    etcdName: "rpctypes.ErrGRPCPeerURLExist",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: Peer URLs already exists",
  },
  MemberNotEnoughStarted: {
    etcdName: "rpctypes.ErrGRPCMemberNotEnoughStarted",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: re-configuration failed due to not enough started members",
  },
  MemberBadURLs: {
    etcdName: "rpctypes.ErrGRPCMemberBadURLs",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: given member URLs are invalid",
  },
  MemberNotFound: {
    etcdName: "rpctypes.ErrGRPCMemberNotFound",
    code: S.NOT_FOUND,
    message: "etcdserver: member not found",
  },
  MemberNotLearner: {
    etcdName: "rpctypes.ErrGRPCMemberNotLearner",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: can only promote a learner member",
  },
  LearnerNotReady: {
    etcdName: "rpctypes.ErrGRPCLearnerNotReady",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: can only promote a learner member which is in sync with leader",
  },
  TooManyLearners: {
    etcdName: "rpctypes.ErrGRPCTooManyLearners",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: too many learner members in cluster",
  },
  ClusterIdMismatch: {
    etcdName: "rpctypes.ErrGRPCClusterIdMismatch",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: cluster ID mismatch",
    since: "v3.4.28",
  },

  // Request admission.
  RequestTooLarge: {
    etcdName: "rpctypes.ErrGRPCRequestTooLarge",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: request is too large",
  },
  RequestTooManyRequests: {
    etcdName: "rpctypes.ErrGRPCRequestTooManyRequests",
    code: S.RESOURCE_EXHAUSTED,
    message: "etcdserver: too many requests",
  },

  // Authentication and authorization.
  RootUserNotExist: {
    etcdName: "rpctypes.ErrGRPCRootUserNotExist",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: root user does not exist",
  },
  RootRoleNotExist: {
    etcdName: "rpctypes.ErrGRPCRootRoleNotExist",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: root user does not have root role",
  },
  UserAlreadyExist: {
    etcdName: "rpctypes.ErrGRPCUserAlreadyExist",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: user name already exists",
  },
  UserEmpty: {
    etcdName: "rpctypes.ErrGRPCUserEmpty",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: user name is empty",
  },
  UserNotFound: {
    etcdName: "rpctypes.ErrGRPCUserNotFound",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: user name not found",
  },
  RoleAlreadyExist: {
    etcdName: "rpctypes.ErrGRPCRoleAlreadyExist",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: role name already exists",
  },
  RoleNotFound: {
    etcdName: "rpctypes.ErrGRPCRoleNotFound",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: role name not found",
  },
  RoleEmpty: {
    etcdName: "rpctypes.ErrGRPCRoleEmpty",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: role name is empty",
  },
  AuthFailed: {
    etcdName: "rpctypes.ErrGRPCAuthFailed",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: authentication failed, invalid user ID or password",
  },
  // auth/store.go CheckPassword for a user added with no_password: not in v3rpc's error map, so grpc-go
  // sends the plain Go error with code Unknown (etcd 3.4.23 and release-3.4 alike).
  NoPasswordUser: {
    etcdName: "auth.ErrNoPasswordUser",
    code: S.UNKNOWN,
    message: "auth: authentication failed, password was given for no password user",
  },
  // auth/store.go errors that the Maintenance service's admin check (v3rpc/maintenance.go
  // authMaintenanceServer) returns unconverted: code Unknown and the auth package's text.
  AuthPlainPermissionDenied: {
    etcdName: "auth.ErrPermissionDenied",
    code: S.UNKNOWN,
    message: "auth: permission denied",
  },
  AuthPlainUserEmpty: {
    etcdName: "auth.ErrUserEmpty",
    code: S.UNKNOWN,
    message: "auth: user name is empty",
  },
  AuthPlainInvalidAuthToken: {
    etcdName: "auth.ErrInvalidAuthToken",
    code: S.UNKNOWN,
    message: "auth: invalid auth token",
  },
  PermissionNotGiven: {
    etcdName: "rpctypes.ErrGRPCPermissionNotGiven",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: permission not given",
    since: "v3.4.25",
  },
  PermissionDenied: {
    etcdName: "rpctypes.ErrGRPCPermissionDenied",
    code: S.PERMISSION_DENIED,
    message: "etcdserver: permission denied",
  },
  RoleNotGranted: {
    etcdName: "rpctypes.ErrGRPCRoleNotGranted",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: role is not granted to the user",
  },
  PermissionNotGranted: {
    etcdName: "rpctypes.ErrGRPCPermissionNotGranted",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: permission is not granted to the role",
  },
  AuthNotEnabled: {
    etcdName: "rpctypes.ErrGRPCAuthNotEnabled",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: authentication is not enabled",
  },
  InvalidAuthToken: {
    etcdName: "rpctypes.ErrGRPCInvalidAuthToken",
    code: S.UNAUTHENTICATED,
    message: "etcdserver: invalid auth token",
  },
  InvalidAuthMgmt: {
    etcdName: "rpctypes.ErrGRPCInvalidAuthMgmt",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: invalid auth management",
  },
  AuthOldRevision: {
    etcdName: "rpctypes.ErrGRPCAuthOldRevision",
    code: S.INVALID_ARGUMENT,
    message: "etcdserver: revision of auth store is old",
    since: "v3.4.19",
  },

  // Cluster health, leadership and timeouts.
  NoLeader: {
    etcdName: "rpctypes.ErrGRPCNoLeader",
    code: S.UNAVAILABLE,
    message: "etcdserver: no leader",
  },
  NotLeader: {
    etcdName: "rpctypes.ErrGRPCNotLeader",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: not leader",
  },
  LeaderChanged: {
    etcdName: "rpctypes.ErrGRPCLeaderChanged",
    code: S.UNAVAILABLE,
    message: "etcdserver: leader changed",
  },
  NotCapable: {
    etcdName: "rpctypes.ErrGRPCNotCapable",
    code: S.UNAVAILABLE,
    message: "etcdserver: not capable",
  },
  Stopped: {
    etcdName: "rpctypes.ErrGRPCStopped",
    code: S.UNAVAILABLE,
    message: "etcdserver: server stopped",
  },
  Timeout: {
    etcdName: "rpctypes.ErrGRPCTimeout",
    code: S.UNAVAILABLE,
    message: "etcdserver: request timed out",
  },
  TimeoutDueToLeaderFail: {
    etcdName: "rpctypes.ErrGRPCTimeoutDueToLeaderFail",
    code: S.UNAVAILABLE,
    message: "etcdserver: request timed out, possibly due to previous leader failure",
  },
  TimeoutDueToConnectionLost: {
    etcdName: "rpctypes.ErrGRPCTimeoutDueToConnectionLost",
    code: S.UNAVAILABLE,
    message: "etcdserver: request timed out, possibly due to connection lost",
  },
  TimeoutWaitAppliedIndex: {
    etcdName: "rpctypes.ErrGRPCTimeoutWaitAppliedIndex",
    code: S.UNAVAILABLE,
    message: "etcdserver: request timed out, waiting for the applied index took too long",
    since: "v3.4.20",
  },
  Unhealthy: {
    etcdName: "rpctypes.ErrGRPCUnhealthy",
    code: S.UNAVAILABLE,
    message: "etcdserver: unhealthy cluster",
  },
  Corrupt: {
    etcdName: "rpctypes.ErrGRPCCorrupt",
    code: S.DATA_LOSS,
    message: "etcdserver: corrupt cluster",
  },
  // etcd's identifier really is spelled "GPRC".
  NotSupportedForLearner: {
    etcdName: "rpctypes.ErrGPRCNotSupportedForLearner",
    code: S.UNAVAILABLE,
    message: "etcdserver: rpc not supported for learner",
  },
  BadLeaderTransferee: {
    etcdName: "rpctypes.ErrGRPCBadLeaderTransferee",
    code: S.FAILED_PRECONDITION,
    message: "etcdserver: bad leader transferee",
  },
  // etcdserver/errors.go: MoveLeader's wait ran out. Not in v3rpc's toGRPCErrorMap, so togRPCError sends
  // it as code Unknown with the error's text.
  TimeoutLeaderTransfer: {
    etcdName: "etcdserver.ErrTimeoutLeaderTransfer",
    code: S.UNKNOWN,
    message: "etcdserver: request timed out, leader transfer took too long",
  },

  // v3election (etcdserver/api/v3election/election.go, clientv3/concurrency/election.go).
  ElectionNotLeader: {
    etcdName: "concurrency.ErrElectionNotLeader",
    code: S.UNKNOWN,
    message: "election: not leader",
  },
  ElectionNoLeader: {
    etcdName: "concurrency.ErrElectionNoLeader",
    code: S.UNKNOWN,
    message: "election: no leader",
  },
  ElectionMissingLeaderKey: {
    etcdName: "v3election.ErrMissingLeaderKey",
    code: S.UNKNOWN,
    message: '"leader" field must be provided',
  },
  // clientv3/concurrency/mutex.go: the fix of etcd issue 11456, first released in v3.5.0 (etcd 3.4's
  // Lock has the bug and never answers it). leasehold's Lock answers it when the lock's key is gone
  // (its lease expired or revoked, or the key deleted) before the lock was acquired.
  SessionExpired: {
    etcdName: "concurrency.ErrSessionExpired",
    code: S.UNKNOWN,
    message: "mutex: session is expired",
    since: "v3.5.0",
  },
} as const satisfies Record<string, EtcdErrorSpec>;

/** The stable name of a catalogued error. */
export type EtcdErrorName = keyof typeof ETCD_ERRORS;

/** Every name, in catalogue order. */
export const ETCD_ERROR_NAMES: readonly EtcdErrorName[] = Object.keys(ETCD_ERRORS) as EtcdErrorName[];

/** The entry for `name`. */
export function etcdErrorSpec(name: EtcdErrorName): EtcdErrorSpec {
  return ETCD_ERRORS[name];
}

const NAME_BY_MESSAGE: ReadonlyMap<string, EtcdErrorName> = new Map(
  ETCD_ERROR_NAMES.map((name) => [ETCD_ERRORS[name].message, name]),
);

/**
 * The catalogued error whose message is exactly `message`, as clientv3's
 * rpctypes.Error maps a status message back to a typed error; undefined if none.
 */
export function etcdErrorByMessage(message: string): EtcdErrorName | undefined {
  return NAME_BY_MESSAGE.get(message);
}

/**
 * A grpc-js `ServiceError` for `name`: pass it to a unary callback, or to
 * `call.emit("error", …)` on a server stream (grpc-js sends that as the status
 * and ends the call; `call.destroy(err)` does not send it). The status details (what
 * the client sees as the message) and the Error message are both the catalogued
 * text. `metadata` becomes the trailers; a fresh empty one by default.
 */
export function etcdServiceError(name: EtcdErrorName, options: { metadata?: Metadata } = {}): ServiceError {
  const spec = ETCD_ERRORS[name];
  const error = new Error(spec.message);
  error.name = `EtcdError(${name})`;
  return Object.assign(error, {
    code: spec.code,
    details: spec.message,
    metadata: options.metadata ?? new Metadata(),
  });
}

/**
 * grpc-go's names of the status codes (`codes.Code.String()`), indexed by code
 * number. etcd sometimes sends a Go status error's text, which embeds them.
 */
export const GO_STATUS_CODE_NAMES: readonly string[] = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
];

/**
 * The text of the Go error `status.New(code, message).Err()` for `name`, i.e.
 * `rpc error: code = <GoName> desc = <message>`: what etcd puts where it calls
 * `.Error()` on an rpctypes.ErrGRPC* value.
 */
export function goStatusErrorText(name: EtcdErrorName): string {
  const spec = ETCD_ERRORS[name];
  return `rpc error: code = ${GO_STATUS_CODE_NAMES[spec.code]} desc = ${spec.message}`;
}

/**
 * The fixed `cancel_reason` texts of etcd 3.4's Watch service
 * (etcdserver/api/v3rpc/watch.go, mvcc/watcher.go). A watch cancelled by
 * compaction carries none: it sets `compact_revision` and clients derive the
 * Compacted error themselves. Client cancels also carry none.
 *
 * - `Compacted`: create with start_revision < 0 (since v3.4.38).
 * - `PermissionDenied`: create on a range the user may not read. Since v3.4.22
 *   also `InvalidAuthToken`, `AuthOldRevision`, `UserEmpty` for those auth
 *   failures. These are Go status error texts (`rpc error: code = …`), not bare
 *   messages, because etcd calls `.Error()` on the gRPC status error.
 * - `EmptyWatcherRange`: range_end given and not after key.
 * - `DuplicateWatchId`: a client-chosen watch_id already in use on the stream.
 */
export const WATCH_CANCEL_REASONS = {
  Compacted: ETCD_ERRORS.Compacted.message,
  PermissionDenied: goStatusErrorText("PermissionDenied"),
  InvalidAuthToken: goStatusErrorText("InvalidAuthToken"),
  AuthOldRevision: goStatusErrorText("AuthOldRevision"),
  UserEmpty: goStatusErrorText("UserEmpty"),
  EmptyWatcherRange: "mvcc: watcher range is empty",
  DuplicateWatchId: "mvcc: duplicate watch ID provided on the WatchStream",
} as const;

/** The stable name of a watch cancel reason. */
export type WatchCancelReasonName = keyof typeof WATCH_CANCEL_REASONS;
