/**
 * The package's entry point (`import { connect, open } from "leasehold"`):
 * the TypeScript SDK (src/client/) and the in-process mode (src/embedded/).
 * The server itself is the `leasehold` command (src/cli/).
 */

export type {
  AcquireOptions,
  CallControl,
  ConnectOptions,
  Counter,
  Election,
  EndpointStatus,
  Holding,
  LeaseEvent,
  Subscription,
  WatchEvent,
} from "./client/client.ts";
export { connect, Lease, LeaseholdClient } from "./client/client.ts";
export type { ClientErrorKind, LostLeaseState } from "./client/errors.ts";
export {
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
  UnavailableError,
  UnknownError,
  WaitEndedError,
} from "./client/errors.ts";
export { FenceGuard } from "./client/fence-guard.ts";
export type { KeeperClock, LeaseState } from "./client/lease-keeper.ts";
export type { EmbeddedClient, OpenOptions } from "./embedded/index.ts";
export { open } from "./embedded/index.ts";
