/**
 * Durable Raft storage for one member (the storage/ layer of ARCHITECTURE.md):
 * a checksummed, segmented write-ahead log with group commit, atomic snapshot
 * files, and crash recovery that cuts a torn final write and refuses anything
 * else that is damaged. The on-disk format is described in wal.ts, record.ts
 * and snapfile.ts; the save and recovery contract in storage.ts.
 */

export { StorageCorruptionError, StorageFailedError } from "./errors.ts";
export type { OpenedStorage, StorageOptions, StorageStats } from "./storage.ts";
export { openStorage, Storage } from "./storage.ts";
export { SEGMENT_BYTES_MAX_DEFAULT } from "./wal.ts";
