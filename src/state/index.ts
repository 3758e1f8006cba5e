/**
 * The replicated state machine's public surface: the MVCC key space, the lease
 * table, and the leader's lease duties (the lessor, which takes time as an
 * argument and is not replicated). Deterministic: same commands in, same state out.
 */

export type { Alarm, AlarmSnapshotEntry, AlarmType } from "./alarm.ts";
export {
  ALARM_TYPES,
  AlarmTable,
  MAX_ALARM_MEMBER_ID,
  QUOTA_KV_OVERHEAD_BYTES,
  QUOTA_LEASE_OVERHEAD_BYTES,
  quotaCostBytes,
} from "./alarm.ts";
export type {
  AccessCheck,
  AuthApplyOutcome,
  AuthError,
  AuthRole,
  AuthStoreSnapshot,
  AuthToken,
  AuthUser,
  AuthView,
  LeaseKeys,
  Permission,
  PermissionType,
} from "./auth.ts";
export {
  AUTH_TOKEN_PREFIX_LENGTH,
  AUTH_TOKENS_MAX,
  AuthStore,
  compareNames,
  deleteChecks,
  FIRST_AUTH_REVISION,
  isValidPermissionRange,
  leaseReadChecks,
  leaseWriteChecks,
  permissionsAllow,
  putChecks,
  ROOT_ROLE,
  ROOT_USER,
  rangeChecks,
  txnChecks,
} from "./auth.ts";
export {
  base64ToBytes,
  bytesEqual,
  bytesToBase64,
  bytesToKeyString,
  compareBytes,
  EMPTY_BYTES,
  isRangeEndToEnd,
  keyStringToBytes,
  prefixEnd,
  RANGE_END_TO_END,
} from "./bytes.ts";
export type {
  AuthCommand,
  CheckpointItem,
  ClientCommand,
  ClientSession,
  Command,
  CommandAuth,
  CommandType,
  DecodeOutcome,
  ExpireItem,
} from "./command.ts";
export {
  AUTH_NAME_LENGTH_MAX,
  AUTH_PASSWORD_HASH_LENGTH_MAX,
  binaryCommandType,
  COMMAND_FORMAT_VERSION,
  COMMAND_JSON_FORMAT_VERSION,
  COMMAND_TXN_DEPTH_MAX,
  CommandDecodeError,
  commandRequestBytes,
  decodeCommand,
  encodeCommand,
  MEMBER_TEXT_LENGTH_MAX,
  MEMBER_URLS_MAX,
  RELEASE_REASON_LENGTH_MAX,
  SESSION_CLIENT_ID_LENGTH_MAX,
  tryDecodeCommand,
} from "./command.ts";
export type { CounterValue } from "./counters.ts";
export {
  COUNTER_KEY_PREFIX,
  COUNTER_MAX,
  COUNTER_MIN,
  COUNTER_NAME_BYTES_MAX,
  counterKey,
  counterNameProblem,
  counterValueOf,
  parseCounter,
} from "./counters.ts";
export { Crc32cWriter, crc32c, crc32cUpdate } from "./crc32c.ts";
export type {
  CheckpointOutcome,
  GrantOutcome,
  LeaseInfo,
  LeaseSnapshotEntry,
  LeaseTableOptions,
  LeaseTableSnapshot,
  LeaseTimeToLiveInfo,
  RevokeOutcome,
} from "./lease.ts";
export {
  DEFAULT_MIN_LEASE_TTL_SECONDS,
  describeLease,
  LeaseTable,
  MAX_LEASE_ID,
  MAX_LEASE_TTL_SECONDS,
} from "./lease.ts";
export type {
  KeepAliveOutcome,
  LeaseCheckpoint,
  LeaseRef,
  LessorOptions,
  RemainingOutcome,
} from "./lessor.ts";
export {
  DEFAULT_CHECKPOINT_INTERVAL_MS,
  DEFAULT_ELECTION_TIMEOUT_MS,
  DEFAULT_REVOKE_RETRY_MS,
  DEFAULT_SPREAD_LEASES_PER_SECOND,
  Lessor,
  MAX_CHECKPOINTS_PER_BATCH,
  MAX_LEASES_PER_REVOKE_BATCH,
} from "./lessor.ts";
export type { Limits } from "./limits.ts";
export { DEFAULT_LIMITS } from "./limits.ts";
export type {
  ApplyError,
  ApplyResult,
  CommandResult,
  LockDelay,
  ResponseHeader,
  StateMachineOptions,
} from "./machine.ts";
export { StateMachine } from "./machine.ts";
export type { MemberContext, MemberRecord, MemberTableSnapshot } from "./members.ts";
export { decodeMemberContext, encodeMemberContext, MemberTable } from "./members.ts";
export type {
  CompactResult,
  Compare,
  CompareResult,
  DeleteKeysResult,
  DeleteRangeRequest,
  DeleteRangeResponse,
  DeleteRangeResult,
  EventsSinceResult,
  HashKvResult,
  KeyRange,
  MvccError,
  MvccOptions,
  MvccSnapshot,
  PutRequest,
  PutResponse,
  PutResult,
  RangeRequest,
  RangeResponse,
  RangeResult,
  RequestError,
  RequestOp,
  ResponseOp,
  SortOrder,
  SortTarget,
  TxnRequest,
  TxnResponse,
  TxnResult,
  WriteEffects,
  WriteOptions,
} from "./mvcc.ts";
export {
  checkTxnRequest,
  describeEvent,
  FIRST_REVISION,
  MVCC_CHANGE_OVERHEAD_BYTES,
  MvccStore,
  NEVER_COMPACTED,
  NO_LEASES,
} from "./mvcc.ts";
export type { KeepAliveAnswer, LeadershipChange, RaftView, ReplicaOptions } from "./replica.ts";
export { Replica } from "./replica.ts";
export type { ReleaseRequest, ResourceClaim } from "./resources.ts";
export {
  claimOf,
  HOLDER_BYTES_MAX,
  holderProblem,
  LOCK_DELAY_CONFIG_PREFIX,
  LOCK_DELAY_PREFIX,
  lockDelayConfigKey,
  lockDelayKey,
  lockDelayResourceOf,
  nameProblem,
  RELEASE_DEADLINE_PREFIX,
  RELEASE_REQUEST_PREFIX,
  RESOURCE_KEY_PREFIX,
  RESOURCE_NAME_BYTES_MAX,
  releaseDeadlineKey,
  releaseRequestKey,
  releaseRequestOf,
  resourceKey,
  resourceNameProblem,
  resourceNamesPrefix,
  resourcePrefix,
} from "./resources.ts";
export type { SemaphoreClaim, SemaphoreView } from "./semaphores.ts";
export {
  permitsProblem,
  SEMAPHORE_KEY_PREFIX,
  SEMAPHORE_PERMITS_MAX,
  semaphoreClaimOf,
  semaphoreKey,
  semaphoreNameProblem,
  semaphorePrefix,
  semaphoreView,
} from "./semaphores.ts";
export type { SessionCheck, SessionOptions, SessionSnapshotEntry } from "./session.ts";
export { DEFAULT_SESSION_IDLE_ENTRIES_MAX, DEFAULT_SESSIONS_MAX, SessionTable } from "./session.ts";
export type { KeyValue, KvEvent, LeaseChange, LeaseId, Revision } from "./types.ts";
export { leaseId, NO_LEASE, revision } from "./types.ts";
export type {
  WatchCreateError,
  WatchCreateRequest,
  WatchCreateResult,
  WatchFilter,
  WatchHubOptions,
  WatchId,
  WatchResponse,
  WatchStatus,
} from "./watch.ts";
export {
  describeWatchResponse,
  WATCH_QUEUE_EVENTS_MAX,
  WATCH_RESPONSE_EVENTS_MAX,
  WATCH_WATCHERS_MAX,
  WatchHub,
  watchId,
} from "./watch.ts";
