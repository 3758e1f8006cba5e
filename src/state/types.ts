/**
 * The replicated state machine's vocabulary: revisions, lease ids, key/value
 * records and the events a write produces. Plain data, shared by the MVCC
 * store, the lease table and (later) the apply layer and the watch hub.
 */

/**
 * An MVCC revision: the store's logical clock, one per write transaction
 * (etcd's main revision). 0 means "none"; the store starts at 1 as etcd does;
 * the first write gets 2. Before any compaction the compacted revision is
 * -1, etcd's compactMainRev (see mvcc.ts). A number is
 * exact up to 2^53, which one replica never reaches; the etcd wire's int64 is
 * converted at the API edge.
 */
export type Revision = number & { readonly __brand: "Revision" };
export const revision = (n: number): Revision => n as Revision;

/** An etcd lease id: a positive int64 on the wire; 0n means "no lease". */
export type LeaseId = bigint & { readonly __brand: "LeaseId" };
export const leaseId = (n: bigint): LeaseId => n as LeaseId;
export const NO_LEASE = leaseId(0n);

/** One version of a key (etcd mvccpb.KeyValue). Immutable once stored. */
export interface KeyValue {
  readonly key: Uint8Array;
  /** Revision of the write that created this incarnation of the key. */
  readonly createRevision: Revision;
  /** Revision of the last write to the key. */
  readonly modRevision: Revision;
  /** Writes since the key was (re)created, starting at 1. */
  readonly version: number;
  readonly value: Uint8Array;
  readonly lease: LeaseId;
}

/**
 * A change to one key, as a watcher sees it (etcd mvccpb.Event). For a delete,
 * `kv` holds the key with modRevision = the deleting revision, version 0 and an
 * empty value, as etcd sends it.
 */
export interface KvEvent {
  readonly type: "put" | "delete";
  readonly kv: KeyValue;
  /** The previous version of the key, when there was one. */
  readonly prevKv: KeyValue | undefined;
}

/**
 * How a write moved a key between leases (from/to NO_LEASE when it had or gets
 * none): the MVCC store reports these, the lease table applies them in O(1) each.
 */
export interface LeaseChange {
  readonly key: Uint8Array;
  /**
   * The key as a key string (bytes.ts), when the producer has it: the lease
   * table then keeps that string instead of making its own copy.
   */
  readonly keyString?: string | undefined;
  readonly from: LeaseId;
  readonly to: LeaseId;
}
