/**
 * The etcd v3 gRPC API surface: the loaded protos and service definitions
 * (proto.ts) and the one catalogue of etcd errors (errors.ts). gRPC and
 * protobuf types stay in this folder and src/client/ (CONVENTIONS 1).
 */

export type {
  EtcdErrorName,
  EtcdErrorSpec,
  WatchCancelReasonName,
} from "./errors.ts";
export {
  ETCD_ERROR_NAMES,
  ETCD_ERRORS,
  etcdErrorByMessage,
  etcdErrorSpec,
  etcdServiceError,
  GO_STATUS_CODE_NAMES,
  goStatusErrorText,
  WATCH_CANCEL_REASONS,
} from "./errors.ts";
export type {
  EtcdApi,
  EtcdMethodName,
  EtcdServiceDefinition,
  EtcdServiceName,
  MethodKind,
  WireMessage,
} from "./proto.ts";
export {
  ETCD_SERVICES,
  INT64_MAX,
  INT64_MIN,
  int64FromWire,
  loadEtcdApi,
  PROTO_FILES,
  PROTO_LOAD_OPTIONS,
  PROTO_ROOT_DIR,
  UINT64_MAX,
} from "./proto.ts";
