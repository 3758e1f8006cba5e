/**
 * The storage layer's operating errors (CONVENTIONS 7): typed, with a stable
 * `code`, surfaced to the host and never swallowed. A failed assertion (a bug in
 * the caller, e.g. entries that leave a gap) is an AssertionError instead.
 */

/**
 * Durable data is damaged in a way that is not a torn final write: a bad record
 * followed by more data, a damaged record in a segment that is not the last, a
 * missing segment or snapshot, a gap in the log. Recovery refuses to guess; an
 * operator restores the member from a peer (remove it and add it back empty).
 */
export class StorageCorruptionError extends Error {
  override readonly name = "StorageCorruptionError";
  readonly code = "storage.corrupt";
  /** The damaged file (absolute path), or the directory when a file is missing. */
  readonly file: string;
  /** Byte offset in `file` where the damage starts (0 when the whole file is at fault). */
  readonly offset: number;

  constructor(file: string, offset: number, detail: string) {
    super(`storage: corrupt ${file} at byte ${offset}: ${detail}`);
    this.file = file;
    this.offset = offset;
  }
}

/**
 * An earlier write, fsync or rename failed, so what is on disk is unknown (after a
 * failed fsync the kernel may have dropped the dirty pages: retrying and
 * succeeding would claim durability that does not exist). Every later call
 * throws this; the member must restart and recover from disk.
 */
export class StorageFailedError extends Error {
  override readonly name = "StorageFailedError";
  readonly code = "storage.failed";

  constructor(cause: unknown) {
    super(`storage: an earlier write failed, restart the member: ${String(cause)}`, { cause });
  }
}
