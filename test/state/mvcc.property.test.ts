/**
 * Property tests of the MVCC store (src/state/mvcc.ts) against a deliberately
 * simple model: every committed state kept whole, one Map per revision, plus
 * the events of each revision. Reads at revision r look at state r; a txn
 * copies the current state and edits the copy.
 *
 * Contract: the model shares no data structure or trick with the store (no
 * B-tree, no per-key history, no interval merging, no binary search); it
 * follows the etcd rules as the store's header states them, written the
 * plainest way. Random commands run on both; every answer must be equal.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteReader, ByteWriter, bytesToKeyString, prefixEnd } from "../../src/state/bytes.ts";
import type {
  Compare,
  DeleteRangeRequest,
  KeyRange,
  MvccError,
  PutRequest,
  RangeRequest,
  RequestOp,
  ResponseOp,
  SortTarget,
  TxnRequest,
  WriteOptions,
} from "../../src/state/mvcc.ts";
import { MvccStore } from "../../src/state/mvcc.ts";
import type { KeyValue, KvEvent, LeaseChange } from "../../src/state/types.ts";
import { leaseId, NO_LEASE, revision } from "../../src/state/types.ts";

const RUNS = 150;
/** Small on purpose, so the limit is hit by random txns. */
const TXN_OPS_MAX = 5;
const LIMITS = { requestBytesMax: 1 << 20, txnOpsMax: TXN_OPS_MAX, watchBatchRevisionsMax: 3 };
/** Leases 1 and 2 exist, 3 does not. */
const OPTIONS: WriteOptions = { leaseExists: (id) => id === 1n || id === 2n };
const EMPTY = new Uint8Array(0);

// ---------------------------------------------------------------------------
// The model.

/** Bytewise order, element by element. */
function cmp(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length && i < b.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function inRange(key: Uint8Array, r: KeyRange): boolean {
  const end = r.rangeEnd;
  if (end === undefined || end.length === 0) return cmp(key, r.key) === 0;
  if (end.length === 1 && end[0] === 0) return cmp(key, r.key) >= 0;
  return cmp(key, r.key) >= 0 && cmp(key, end) < 0;
}

type State = ReadonlyMap<string, KeyValue>;

/** The kvs of `state` in `r`, in key order. */
function kvsIn(state: State, r: KeyRange): KeyValue[] {
  return [...state.values()].filter((kv) => inRange(kv.key, r)).sort((a, b) => cmp(a.key, b.key));
}

const hex = (k: Uint8Array): string => Array.from(k, (x) => x.toString(16).padStart(2, "0")).join("");

type Fail = { ok: false; error: MvccError };

class Model {
  /** states[r]: the key space after revision r. The store starts at revision 1 (etcd); states[0] is unused. */
  readonly states: State[] = [new Map(), new Map()];
  /** events[r]: the events of revision r (none at 0 and 1). */
  readonly events: KvEvent[][] = [[], []];
  /** etcd's compactMainRev: -1 before any compaction. */
  compacted = -1;

  get rev(): number {
    return this.states.length - 1;
  }

  readError(r: number | undefined): Fail | undefined {
    if (r === undefined || r === 0) return undefined;
    if (r > this.rev) return { ok: false, error: "futureRevision" };
    if (r < this.compacted) return { ok: false, error: "compacted" };
    return undefined;
  }

  /** etcd executeRange over `state`, reporting `current` as the revision. */
  static rangeIn(state: State, req: RangeRequest, current: number) {
    const all = kvsIn(state, req);
    if (req.countOnly) return { kvs: [], more: false, count: all.length, revision: revision(current) };
    const limit = (req.limit ?? 0) > 0 ? req.limit! : 0;
    const hasFilter = !!(
      req.minModRevision ||
      req.maxModRevision ||
      req.minCreateRevision ||
      req.maxCreateRevision
    );
    const order = req.sortOrder ?? "none";
    let kvs = order === "none" && !hasFilter && limit > 0 ? all.slice(0, limit + 1) : all;
    kvs = kvs.filter(
      (kv) =>
        (!req.maxModRevision || kv.modRevision <= req.maxModRevision) &&
        (!req.minModRevision || kv.modRevision >= req.minModRevision) &&
        (!req.maxCreateRevision || kv.createRevision <= req.maxCreateRevision) &&
        (!req.minCreateRevision || kv.createRevision >= req.minCreateRevision),
    );
    const target: SortTarget = req.sortTarget ?? "key";
    const field = (kv: KeyValue): number | Uint8Array =>
      target === "key"
        ? kv.key
        : target === "value"
          ? kv.value
          : target === "version"
            ? kv.version
            : target === "create"
              ? kv.createRevision
              : kv.modRevision;
    const by = (a: KeyValue, b: KeyValue): number => {
      const x = field(a);
      const y = field(b);
      return typeof x === "number" ? x - (y as number) : cmp(x, y as Uint8Array);
    };
    const effective = order === "none" && target !== "key" ? "ascend" : order;
    // Stable sorts: ties keep key order.
    if (effective === "ascend") kvs = [...kvs].sort(by);
    if (effective === "descend") kvs = [...kvs].sort((a, b) => by(b, a));
    const more = limit > 0 && kvs.length > limit;
    if (more) kvs = kvs.slice(0, limit);
    if (req.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: EMPTY }));
    return { kvs, more, count: all.length, revision: revision(current) };
  }

  range(req: RangeRequest) {
    if (req.key.length === 0) return { ok: false, error: "emptyKey" };
    const e = this.readError(req.revision);
    if (e) return e;
    const at = req.revision || this.rev;
    return { ok: true, ...Model.rangeIn(this.states[at]!, req, this.rev) };
  }

  compact(target: number) {
    if (target <= this.compacted) return { ok: false, error: "compacted" };
    if (target > this.rev) return { ok: false, error: "futureRevision" };
    this.compacted = target;
    return { ok: true, revision: this.rev };
  }

  eventsSince(start: number, r: KeyRange, revisionsMax: number) {
    if (start < this.compacted) return { ok: false, error: "compacted", compactRevision: this.compacted };
    const events: KvEvent[] = [];
    let revisions = 0;
    for (let at = Math.max(start, 1); at <= this.rev; at++) {
      const mine = this.events[at]!.filter((ev) => inRange(ev.kv.key, r));
      if (mine.length === 0) continue;
      if (revisions === revisionsMax) return { ok: true, events, nextRevision: at };
      revisions++;
      events.push(...mine);
    }
    return { ok: true, events, nextRevision: Math.max(start, this.rev + 1) };
  }

  put(req: PutRequest) {
    if (req.key.length === 0) return { ok: false, error: "emptyKey" };
    if (req.ignoreValue && req.value.length > 0) return { ok: false, error: "valueProvided" };
    if (req.ignoreLease && req.lease) return { ok: false, error: "leaseProvided" };
    if (req.lease && !OPTIONS.leaseExists(req.lease)) return { ok: false, error: "leaseNotFound" };
    if ((req.ignoreValue || req.ignoreLease) && !this.current().has(hex(req.key))) {
      return { ok: false, error: "keyNotFound" };
    }
    const w = this.write();
    const response = w.put(req);
    return { ok: true, ...response, ...this.commit(w) };
  }

  deleteRange(req: DeleteRangeRequest) {
    if (req.key.length === 0) return { ok: false, error: "emptyKey" };
    const w = this.write();
    const response = w.del(req);
    return { ok: true, ...response, ...this.commit(w) };
  }

  deleteKeys(keys: Uint8Array[]) {
    const w = this.write();
    const unique = [...new Map(keys.map((k) => [hex(k), k])).values()].sort(cmp);
    let deleted = 0;
    for (const k of unique) deleted += w.del({ key: k }).deleted;
    const effects = this.commit(w);
    return { revision: this.rev, deleted, ...effects };
  }

  txn(req: TxnRequest) {
    const shape = checkShape(req, TXN_OPS_MAX);
    if (shape) return { ok: false, error: shape };
    if (!writeSets(req.success ?? []) || !writeSets(req.failure ?? []))
      return { ok: false, error: "duplicateKey" };
    const pre = this.current();
    const stateError = this.checkPath(req, pre);
    if (stateError) return { ok: false, error: stateError };
    const w = this.write();
    const response = w.txn(req, pre);
    const effects = this.commit(w);
    return { ok: true, revision: this.rev, ...response, ...effects };
  }

  current(): State {
    return this.states[this.rev]!;
  }

  private checkPath(req: TxnRequest, pre: State): MvccError | undefined {
    for (const op of (holds(req, pre) ? req.success : req.failure) ?? []) {
      let e: MvccError | undefined;
      if (op.type === "range") e = this.readError(op.request.revision)?.error;
      if (op.type === "put") {
        const p = op.request;
        if ((p.ignoreValue || p.ignoreLease) && !pre.has(hex(p.key))) e = "keyNotFound";
        else if (p.lease && !OPTIONS.leaseExists(p.lease)) e = "leaseNotFound";
      }
      if (op.type === "txn") e = this.checkPath(op.request, pre);
      if (e) return e;
    }
    return undefined;
  }

  private write(): ModelWrite {
    return new ModelWrite(this);
  }

  private commit(w: ModelWrite): { events: KvEvent[]; leaseChanges: LeaseChange[] } {
    if (w.events.length > 0) {
      this.states.push(w.state);
      this.events.push(w.events);
    }
    return { events: w.events, leaseChanges: w.leaseChanges };
  }
}

/** Every compare of `req` holds on `state` (etcd applyCompare). */
function holds(req: TxnRequest, state: State): boolean {
  return (req.compare ?? []).every((c) => {
    const kvs = kvsIn(state, c);
    if (kvs.length === 0) return c.target === "value" ? false : compareOne(c, undefined);
    return kvs.every((kv) => compareOne(c, kv));
  });
}

function compareOne(c: Compare, kv: KeyValue | undefined): boolean {
  let d: number;
  if (c.target === "value") d = cmp(kv!.value, c.value);
  else if (c.target === "version") d = (kv?.version ?? 0) - c.version;
  else if (c.target === "create") d = (kv?.createRevision ?? 0) - c.createRevision;
  else if (c.target === "mod") d = (kv?.modRevision ?? 0) - c.modRevision;
  else d = Number((kv?.lease ?? 0n) - c.lease);
  return c.result === "equal"
    ? d === 0
    : c.result === "notEqual"
      ? d !== 0
      : c.result === "greater"
        ? d > 0
        : d < 0;
}

function checkShape(req: TxnRequest, opsMax: number): MvccError | undefined {
  const n = Math.max(req.compare?.length ?? 0, req.success?.length ?? 0, req.failure?.length ?? 0);
  if (n > opsMax) return "tooManyOps";
  if ((req.compare ?? []).some((c) => c.key.length === 0)) return "emptyKey";
  for (const op of [...(req.success ?? []), ...(req.failure ?? [])]) {
    let e: MvccError | undefined;
    if (op.type === "txn") e = checkShape(op.request, opsMax - n);
    else if (op.request.key.length === 0) e = "emptyKey";
    else if (op.type === "put" && op.request.ignoreValue && op.request.value.length > 0) e = "valueProvided";
    else if (op.type === "put" && op.request.ignoreLease && op.request.lease) e = "leaseProvided";
    if (e) return e;
  }
  return undefined;
}

/** etcd checkIntervals with lists and linear scans; a from-key delete covers everything after its key. */
function writeSets(ops: readonly RequestOp[]): { puts: string[]; dels: KeyRange[] } | undefined {
  const dels: KeyRange[] = ops.flatMap((op) => (op.type === "deleteRange" ? [op.request] : []));
  const deleted = (k: string) => dels.some((d) => inRange(fromHex(k), d));
  const puts: string[] = [];
  for (const op of ops) {
    if (op.type !== "txn") continue;
    const then = writeSets(op.request.success ?? []);
    const otherwise = writeSets(op.request.failure ?? []);
    if (!then || !otherwise) return undefined;
    for (const k of then.puts) {
      if (puts.includes(k) || deleted(k)) return undefined;
      puts.push(k);
    }
    for (const k of otherwise.puts) {
      if ((puts.includes(k) && !then.puts.includes(k)) || deleted(k)) return undefined;
      if (!puts.includes(k)) puts.push(k); // a set, as etcd's map: then and else may both put k
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    if (op.type !== "put") continue;
    const k = hex(op.request.key);
    if (puts.includes(k) || deleted(k)) return undefined;
    puts.push(k);
  }
  return { puts, dels };
}

function fromHex(h: string): Uint8Array {
  return Uint8Array.from(h.match(/../g) ?? [], (x) => Number.parseInt(x, 16));
}

/** One write in progress on a copy of the current state. */
class ModelWrite {
  readonly state: Map<string, KeyValue>;
  readonly events: KvEvent[] = [];
  readonly leaseChanges: LeaseChange[] = [];
  readonly revision: number;

  constructor(private readonly model: Model) {
    this.state = new Map(model.current());
    this.revision = model.rev + 1;
  }

  private get visibleRevision(): number {
    return this.events.length > 0 ? this.revision : this.model.rev;
  }

  put(req: PutRequest) {
    const prev = this.state.get(hex(req.key));
    const kv: KeyValue = {
      key: req.key,
      createRevision: revision(prev ? prev.createRevision : this.revision),
      modRevision: revision(this.revision),
      version: prev ? prev.version + 1 : 1,
      value: req.ignoreValue ? prev!.value : req.value,
      lease: req.ignoreLease ? prev!.lease : (req.lease ?? NO_LEASE),
    };
    this.state.set(hex(req.key), kv);
    this.events.push({ type: "put", kv, prevKv: prev });
    if ((prev?.lease ?? NO_LEASE) !== kv.lease) {
      this.leaseChanges.push({
        key: req.key,
        keyString: bytesToKeyString(req.key),
        from: prev?.lease ?? NO_LEASE,
        to: kv.lease,
      });
    }
    return { revision: revision(this.revision), prevKv: req.prevKv ? prev : undefined };
  }

  del(req: DeleteRangeRequest) {
    const victims = kvsIn(this.state, req);
    for (const prev of victims) {
      this.state.delete(hex(prev.key));
      const kv: KeyValue = {
        key: prev.key,
        createRevision: revision(0),
        modRevision: revision(this.revision),
        version: 0,
        value: EMPTY,
        lease: NO_LEASE,
      };
      this.events.push({ type: "delete", kv, prevKv: prev });
      if (prev.lease !== NO_LEASE)
        this.leaseChanges.push({
          key: prev.key,
          keyString: bytesToKeyString(prev.key),
          from: prev.lease,
          to: NO_LEASE,
        });
    }
    return {
      revision: revision(this.visibleRevision),
      deleted: victims.length,
      prevKvs: req.prevKv ? victims : [],
    };
  }

  txn(req: TxnRequest, pre: State): { succeeded: boolean; responses: ResponseOp[] } {
    const succeeded = holds(req, pre);
    const responses: ResponseOp[] = [];
    for (const op of (succeeded ? req.success : req.failure) ?? []) {
      if (op.type === "range") {
        const r = op.request;
        const state = r.revision ? this.model.states[r.revision]! : this.state;
        responses.push({ type: "range", response: Model.rangeIn(state, r, this.visibleRevision) });
      } else if (op.type === "put") responses.push({ type: "put", response: this.put(op.request) });
      else if (op.type === "deleteRange")
        responses.push({ type: "deleteRange", response: this.del(op.request) });
      else responses.push({ type: "txn", response: this.txn(op.request, pre) });
    }
    return { succeeded, responses };
  }
}

// ---------------------------------------------------------------------------
// Arbitraries: a tiny alphabet (with 0x00 and 0xff) so keys, prefixes and values collide often.

const keyArb = fc
  .array(fc.constantFrom(0x00, 0x01, 0x61, 0x62, 0xff), { minLength: 1, maxLength: 3 })
  .map((a) => Uint8Array.from(a));
const valueArb = fc.constantFrom("", "a", "b", "ab").map((s) => new TextEncoder().encode(s));
const leaseArb = fc.constantFrom(0n, 0n, 1n, 2n, 3n).map((n) => leaseId(n));
const smallRev = (max: number) => fc.nat({ max }).map(revision);

const keyRangeArb: fc.Arbitrary<KeyRange> = fc
  .tuple(keyArb, fc.constantFrom("single", "toEnd", "prefix", "end"), keyArb)
  .map(([key, kind, other]) => {
    if (kind === "single") return { key };
    if (kind === "toEnd") return { key, rangeEnd: Uint8Array.of(0) };
    if (kind === "prefix") return { key, rangeEnd: prefixEnd(key) };
    return { key, rangeEnd: other };
  });
/** Also the all-keys range, often. */
const anyRangeArb = fc.oneof(keyRangeArb, fc.constant({ key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) }));

const rangeReqArb = (revMax: number): fc.Arbitrary<RangeRequest> =>
  fc
    .record({
      r: anyRangeArb,
      limit: fc.constantFrom(0, 0, 1, 2, 3, -1),
      revision: fc.oneof(fc.constant(revision(0)), smallRev(revMax)),
      sortOrder: fc.constantFrom("none", "none", "ascend", "descend" as const),
      sortTarget: fc.constantFrom("key", "key", "version", "create", "mod", "value" as const),
      keysOnly: fc.boolean(),
      countOnly: fc.constantFrom(false, false, false, true),
      minModRevision: fc.oneof(fc.constant(undefined), smallRev(revMax)),
      maxModRevision: fc.oneof(fc.constant(undefined), smallRev(revMax)),
      minCreateRevision: fc.oneof(fc.constant(undefined), smallRev(revMax)),
      maxCreateRevision: fc.oneof(fc.constant(undefined), smallRev(revMax)),
    })
    .map(({ r, ...rest }) => ({ ...r, ...rest }));

/** Mostly well-formed: a value with ignoreValue or a lease with ignoreLease only now and then. */
const putReqArb: fc.Arbitrary<PutRequest> = fc
  .record({
    key: keyArb,
    value: valueArb,
    lease: leaseArb,
    prevKv: fc.boolean(),
    ignoreValue: fc.constantFrom(false, false, false, false, true),
    ignoreLease: fc.constantFrom(false, false, false, false, true),
    misuse: fc.constantFrom(false, false, false, false, false, false, false, false, false, true),
  })
  .map(({ misuse, ...p }) => ({
    ...p,
    value: p.ignoreValue && !misuse ? EMPTY : p.value,
    lease: p.ignoreLease && !misuse ? NO_LEASE : p.lease,
  }));

const deleteReqArb: fc.Arbitrary<DeleteRangeRequest> = fc
  .tuple(keyRangeArb, fc.boolean())
  .map(([r, prevKv]) => ({ ...r, prevKv }));

const compareArb: fc.Arbitrary<Compare> = fc
  .record({
    r: fc.oneof(
      keyRangeArb.map((r) => ({ key: r.key })),
      keyRangeArb,
    ),
    result: fc.constantFrom("equal", "notEqual", "greater", "less" as const),
    target: fc.constantFrom("value", "version", "create", "mod", "lease" as const),
    value: valueArb,
    n: fc.nat({ max: 6 }),
    lease: leaseArb,
  })
  .map(({ r, result, target, value, n, lease }): Compare => {
    const base = { ...r, result };
    switch (target) {
      case "value":
        return { ...base, target, value };
      case "version":
        return { ...base, target, version: n % 3 };
      case "create":
        return { ...base, target, createRevision: revision(n) };
      case "mod":
        return { ...base, target, modRevision: revision(n) };
      default:
        return { ...base, target, lease };
    }
  });

function txnArb(depth: number, revMax: number): fc.Arbitrary<TxnRequest> {
  const leaf: fc.Arbitrary<RequestOp>[] = [
    rangeReqArb(revMax).map((request) => ({ type: "range" as const, request })),
    putReqArb.map((request) => ({ type: "put" as const, request })),
    putReqArb.map((request) => ({ type: "put" as const, request })),
    deleteReqArb.map((request) => ({ type: "deleteRange" as const, request })),
  ];
  const nested =
    depth === 0 ? [] : [txnArb(depth - 1, revMax).map((request) => ({ type: "txn" as const, request }))];
  const ops = fc.oneof(...leaf, ...nested, ...nested);
  // Top level: now and then one op too many; nested: short, so the budget the parent leaves is usually enough.
  const branch = (maxLength: number) =>
    fc.oneof(
      { weight: 12, arbitrary: fc.array(ops, { maxLength }) },
      { weight: 1, arbitrary: fc.array(ops, { minLength: TXN_OPS_MAX + 1, maxLength: TXN_OPS_MAX + 1 }) },
    );
  const top = depth === 2;
  return fc.record({
    compare: fc.array(compareArb, { maxLength: top ? 2 : 1 }),
    success: top ? branch(3) : fc.array(ops, { maxLength: 2 }),
    failure: top ? branch(2) : fc.array(ops, { maxLength: 1 }),
  });
}

type Command =
  | { kind: "put"; req: PutRequest }
  | { kind: "delete"; req: DeleteRangeRequest }
  | { kind: "txn"; req: TxnRequest }
  | { kind: "deleteKeys"; keys: Uint8Array[] }
  | { kind: "compact"; back: number };

const REV_MAX = 24;

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: putReqArb.map((req) => ({ kind: "put" as const, req })) },
  { weight: 2, arbitrary: deleteReqArb.map((req) => ({ kind: "delete" as const, req })) },
  { weight: 3, arbitrary: txnArb(2, REV_MAX).map((req) => ({ kind: "txn" as const, req })) },
  {
    weight: 1,
    arbitrary: fc.array(keyArb, { maxLength: 4 }).map((keys) => ({ kind: "deleteKeys" as const, keys })),
  },
  // Relative to the current revision: -1 is the future, and far back often hits the compacted revision.
  {
    weight: 1,
    arbitrary: fc.integer({ min: -1, max: 6 }).map((back) => ({ kind: "compact" as const, back })),
  },
  // A key put in one nested txn and deleted by a later sibling: two changes to one key in one revision.
  {
    weight: 1,
    arbitrary: fc.tuple(putReqArb, deleteReqArb, fc.boolean()).map(([put, del, sameKey]) => ({
      kind: "txn" as const,
      req: {
        success: [
          { type: "txn" as const, request: { success: [{ type: "put" as const, request: put }] } },
          {
            type: "txn" as const,
            request: {
              success: [{ type: "deleteRange" as const, request: sameKey ? { key: put.key } : del }],
            },
          },
        ],
      },
    })),
  },
);

const commandsArb = fc.array(commandArb, { minLength: 1, maxLength: 24 });

/** Runs one command on the store alone; a compaction goes `back` revisions from `current`. */
function apply(store: MvccStore, c: Command, current: number): unknown {
  switch (c.kind) {
    case "put":
      return store.put(c.req, OPTIONS);
    case "delete":
      return store.deleteRange(c.req);
    case "txn":
      return store.txn(c.req, OPTIONS);
    case "deleteKeys":
      return store.deleteKeys(c.keys);
    case "compact":
      return store.compact(revision(Math.max(0, current - c.back)));
  }
}

/** Runs one command on both; returns the two answers. */
function step(store: MvccStore, model: Model, c: Command): [unknown, unknown] {
  const got = apply(store, c, model.rev);
  switch (c.kind) {
    case "put":
      return [got, model.put(c.req)];
    case "delete":
      return [got, model.deleteRange(c.req)];
    case "txn":
      return [got, model.txn(c.req)];
    case "deleteKeys":
      return [got, model.deleteKeys(c.keys)];
    case "compact":
      return [got, model.compact(Math.max(0, model.rev - c.back))];
  }
}

/** Runs `commands` on a fresh store and model, checking every answer; returns both. */
function run(commands: readonly Command[]): { store: MvccStore; model: Model } {
  const store = new MvccStore({ limits: LIMITS });
  const model = new Model();
  for (const c of commands) {
    const [got, want] = step(store, model, c);
    expect(got).toEqual(want);
    expect(store.currentRevision()).toBe(model.rev);
    store.checkInvariants();
  }
  return { store, model };
}

const ALL: KeyRange = { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };

describe("MvccStore against the model", () => {
  it("random writes and txns give the model's answers, events and lease changes", () => {
    fc.assert(
      fc.property(commandsArb, (commands) => {
        run(commands);
      }),
      { numRuns: RUNS },
    );
  });

  it("range at any revision, with random ranges, limits, sorts and filters", () => {
    fc.assert(
      fc.property(
        commandsArb,
        fc.array(rangeReqArb(REV_MAX), { minLength: 1, maxLength: 15 }),
        (commands, reads) => {
          const { store, model } = run(commands);
          for (const req of reads) expect(store.range(req)).toEqual(model.range(req));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("compaction: reads below fail, reads at or above answer as before", () => {
    fc.assert(
      fc.property(commandsArb, fc.nat({ max: REV_MAX }), keyRangeArb, (commands, target, r) => {
        const { store, model } = run(commands);
        const before = Array.from({ length: model.rev + 1 }, (_, at) =>
          store.range({ ...r, revision: revision(at) }),
        );
        const compacted = store.compact(revision(target));
        expect(compacted).toEqual(model.compact(target));
        for (let at = 1; at <= model.rev; at++) {
          const now = store.range({ ...r, revision: revision(at) });
          if (at < model.compacted) expect(now).toEqual({ ok: false, error: "compacted" });
          else expect(now).toEqual(before[at]);
        }
        store.checkInvariants();
      }),
      { numRuns: RUNS },
    );
  });

  it("eventsSince pages through exactly the model's events", () => {
    fc.assert(
      fc.property(
        commandsArb,
        fc.nat({ max: REV_MAX + 2 }),
        anyRangeArb,
        fc.integer({ min: 1, max: 4 }),
        (commands, start, r, max) => {
          const { store, model } = run(commands);
          expect(store.eventsSince(revision(start), r, max)).toEqual(model.eventsSince(start, r, max));
          // Paging from `start` to the end yields everything at once would.
          const whole = model.eventsSince(start, r, Number.MAX_SAFE_INTEGER);
          if (!whole.ok) return;
          const paged: KvEvent[] = [];
          let next = start;
          for (let guard = 0; next <= model.rev && guard <= REV_MAX + 2; guard++) {
            const page = store.eventsSince(revision(next), r, max);
            if (!page.ok) throw new Error("compacted while paging");
            paged.push(...page.events);
            expect(page.nextRevision).toBeGreaterThan(next);
            next = page.nextRevision;
          }
          expect(paged).toEqual(whole.events);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("snapshot round trip: every range at every readable revision, the events, and the future agree", () => {
    fc.assert(
      fc.property(
        commandsArb,
        fc.array(keyRangeArb, { minLength: 1, maxLength: 4 }),
        fc.array(commandArb, { maxLength: 5 }),
        (commands, ranges, after) => {
          const { store, model } = run(commands);
          const json = JSON.stringify(store.snapshot());
          const restored = MvccStore.restore(JSON.parse(json), { limits: LIMITS });
          // Format 2 (binary) makes the same store as format 1 (JSON).
          const w = new ByteWriter(16);
          store.writeSnapshot(w);
          const binary = w.finish();
          const r2 = new ByteReader(binary);
          const fromBinary = MvccStore.readSnapshot(r2, { limits: LIMITS });
          expect(r2.done).toBe(true);
          expect(JSON.stringify(fromBinary.snapshot())).toBe(json);
          expect(restored.currentRevision()).toBe(store.currentRevision());
          expect(restored.compactedRevision()).toBe(store.compactedRevision());
          expect(JSON.stringify(restored.snapshot())).toBe(json);
          const again = new ByteWriter();
          restored.writeSnapshot(again);
          expect(again.finish()).toEqual(binary);
          for (const r of [ALL, ...ranges]) {
            for (let at = Math.max(model.compacted, 1); at <= model.rev; at++) {
              const req = { ...r, revision: revision(at) };
              expect(restored.range(req)).toEqual(store.range(req));
              expect(fromBinary.range(req)).toEqual(store.range(req));
            }
            const since = revision(model.compacted);
            expect(restored.eventsSince(since, r, 1000)).toEqual(store.eventsSince(since, r, 1000));
            expect(fromBinary.eventsSince(since, r, 1000)).toEqual(store.eventsSince(since, r, 1000));
          }
          // The same commands afterwards give the same answers (the model follows the original).
          for (const c of after) {
            const b = apply(restored, c, model.rev);
            const [a, want] = step(store, model, c);
            expect(a).toEqual(want);
            expect(b).toEqual(a);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("key strings sort as the bytes do", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6 }), fc.uint8Array({ maxLength: 6 }), (a, b) => {
        const s = bytesToKeyString(a);
        const t = bytesToKeyString(b);
        expect(Math.sign(s < t ? -1 : s > t ? 1 : 0)).toBe(Math.sign(cmp(a, b)));
      }),
      { numRuns: 500 },
    );
  });
});
