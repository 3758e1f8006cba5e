/**
 * The limits of the replicated state machine and the requests it takes, in one
 * place (CONVENTIONS 5), with etcd's defaults so that etcd clients meet the
 * same bounds. Names carry their unit last.
 *
 * Contract: plain data; every member of a cluster must run with the same
 * values, because some of them decide whether a replicated command applies.
 */

/** Limits on requests and on the MVCC store's work per call. */
export interface Limits {
  /**
   * Largest encoded client request, in bytes (etcd `--max-request-bytes`,
   * default 1.5 MiB). Enforced by the API gateway on the encoded request; the
   * store never sees a bigger one.
   */
  readonly requestBytesMax: number;
  /**
   * Most operations in one txn (etcd `--max-txn-ops`, default 128). Counted as
   * etcd does: the largest of the compare, success and failure lists; nested
   * txns share what their parent leaves (see `checkTxnRequest` in mvcc.ts).
   */
  readonly txnOpsMax: number;
  /**
   * Most distinct revisions handed to one catching-up watcher per call of
   * `MvccStore.eventsSince` (etcd's watchBatchMaxRevs, 1000), so that a watcher
   * far behind is caught up in bounded steps.
   */
  readonly watchBatchRevisionsMax: number;
}

/** etcd's defaults. */
export const DEFAULT_LIMITS: Limits = Object.freeze({
  requestBytesMax: 1_572_864,
  txnOpsMax: 128,
  watchBatchRevisionsMax: 1000,
});
