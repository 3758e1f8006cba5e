/**
 * Property tests of the apply layer (fast-check):
 *
 * 1. Codec: decodeCommand(encodeCommand(c)) equals c for random commands
 *    (nested txns, every optional field, int64 extremes); random bytes and
 *    mutated encodings either decode or fail with CommandDecodeError, never
 *    anything else.
 * 2. Model: random puts, deletes, lease grants / revokes / expiries with
 *    sessions (new seqs, retries, stale seqs) against a dumb model of maps:
 *    the live keys, their values and leases, the lease table, and which
 *    commands took effect agree after every step.
 * 3. Determinism and snapshots: two machines fed the same entries give
 *    byte-equal snapshots; a machine restored from a snapshot at step k and
 *    fed the rest is indistinguishable from the original (every apply result,
 *    ranges at every readable revision, leases, sessions, snapshot bytes).
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ClientSession, Command } from "../../src/state/command.ts";
import {
  CommandDecodeError,
  decodeCommand,
  encodeCommand,
  tryDecodeCommand,
} from "../../src/state/command.ts";
import { StateMachine } from "../../src/state/machine.ts";
import type { Compare, RequestOp, TxnRequest } from "../../src/state/mvcc.ts";
import type { LeaseId } from "../../src/state/types.ts";
import { leaseId, NO_LEASE, revision } from "../../src/state/types.ts";

const RUNS = 100;

// ---------------------------------------------------------------------------
// 1. Codec.

const bytesArb = fc.uint8Array({ maxLength: 6 });
const keyArb = fc.uint8Array({ minLength: 0, maxLength: 3 });
const int64Arb = fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }).map(leaseId);
const tableLeaseArb = fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }).map(leaseId);
const revArb = fc.nat().map(revision);
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
const sessionArb: fc.Arbitrary<ClientSession | undefined> = opt(
  fc.record({ clientId: fc.string({ minLength: 1, maxLength: 8 }), seq: fc.integer({ min: 1 }) }),
);

const putReqArb = fc.record(
  {
    key: keyArb,
    value: bytesArb,
    lease: int64Arb,
    prevKv: fc.boolean(),
    ignoreValue: fc.boolean(),
    ignoreLease: fc.boolean(),
  },
  { requiredKeys: ["key", "value"] },
);
const delReqArb = fc.record(
  { key: keyArb, rangeEnd: keyArb, prevKv: fc.boolean() },
  { requiredKeys: ["key"] },
);
const rangeReqArb = fc.record(
  {
    key: keyArb,
    rangeEnd: keyArb,
    limit: fc.integer({ min: -5, max: 5 }),
    revision: revArb,
    sortOrder: fc.constantFrom("none", "ascend", "descend" as const),
    sortTarget: fc.constantFrom("key", "version", "create", "mod", "value" as const),
    keysOnly: fc.boolean(),
    countOnly: fc.boolean(),
    minModRevision: revArb,
    maxCreateRevision: revArb,
  },
  { requiredKeys: ["key"] },
);
const compareArb: fc.Arbitrary<Compare> = fc
  .tuple(keyArb, opt(keyArb), fc.constantFrom("equal", "notEqual", "greater", "less" as const))
  .chain(([key, rangeEnd, result]) => {
    const base = rangeEnd === undefined ? { key, result } : { key, rangeEnd, result };
    return fc.oneof(
      bytesArb.map((value): Compare => ({ ...base, target: "value", value })),
      fc.integer().map((version): Compare => ({ ...base, target: "version", version })),
      fc.integer().map((n): Compare => ({ ...base, target: "create", createRevision: revision(n) })),
      fc.integer().map((n): Compare => ({ ...base, target: "mod", modRevision: revision(n) })),
      int64Arb.map((lease): Compare => ({ ...base, target: "lease", lease })),
    );
  });
const { txn: txnArb } = fc.letrec<{ txn: TxnRequest; op: RequestOp }>((tie) => ({
  op: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    rangeReqArb.map((request): RequestOp => ({ type: "range", request })),
    putReqArb.map((request): RequestOp => ({ type: "put", request })),
    delReqArb.map((request): RequestOp => ({ type: "deleteRange", request })),
    tie("txn").map((request): RequestOp => ({ type: "txn", request: request as TxnRequest })),
  ),
  txn: fc.record(
    {
      compare: fc.array(compareArb, { maxLength: 2 }),
      success: fc.array(tie("op") as fc.Arbitrary<RequestOp>, { maxLength: 2 }),
      failure: fc.array(tie("op") as fc.Arbitrary<RequestOp>, { maxLength: 2 }),
    },
    { requiredKeys: [] },
  ),
}));

const withSession = <C extends Command>(c: C, session: ClientSession | undefined): C =>
  session === undefined ? c : { ...c, session };

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.tuple(putReqArb, sessionArb).map(([request, s]) => withSession({ type: "put", request }, s)),
  fc.tuple(delReqArb, sessionArb).map(([request, s]) => withSession({ type: "deleteRange", request }, s)),
  fc.tuple(txnArb, sessionArb).map(([request, s]) => withSession({ type: "txn", request }, s)),
  fc.tuple(revArb, sessionArb).map(([r, s]) => withSession({ type: "compact", revision: r }, s)),
  fc
    .tuple(tableLeaseArb, fc.integer(), sessionArb)
    .map(([id, ttlSeconds, s]) => withSession({ type: "leaseGrant", id, ttlSeconds }, s)),
  fc
    .tuple(tableLeaseArb, opt(fc.nat()), sessionArb)
    .map(([id, grantIndex, s]) =>
      withSession(
        grantIndex === undefined ? { type: "leaseRevoke", id } : { type: "leaseRevoke", id, grantIndex },
        s,
      ),
    ),
  fc
    .array(fc.record({ id: tableLeaseArb, remainingTtlSeconds: fc.nat(), grantIndex: fc.nat() }), {
      maxLength: 3,
    })
    .map((checkpoints): Command => ({ type: "leaseCheckpoint", checkpoints })),
  fc
    .array(fc.record({ id: tableLeaseArb, grantIndex: fc.nat() }), { maxLength: 3 })
    .map((leases): Command => ({ type: "leaseExpire", leases })),
);

describe("command codec", () => {
  it("round-trips every command", () => {
    fc.assert(
      fc.property(commandArb, (cmd) => {
        expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
      }),
      { numRuns: 300 },
    );
  });

  it("garbage decodes or fails with CommandDecodeError, never anything else", () => {
    const mutated = fc
      .tuple(commandArb, fc.nat(), fc.integer({ min: 0, max: 255 }))
      .map(([cmd, at, byte]) => {
        const data = encodeCommand(cmd).slice();
        data[at % data.length] = byte;
        return data;
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 40 }), mutated), (data) => {
        const r = tryDecodeCommand(data);
        if (!r.ok) expect(r.error).toBeInstanceOf(CommandDecodeError);
        // Whatever decodes, applies without an assertion.
        new StateMachine().apply(1, data);
      }),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------
// 2. Against a model.

const KEYS = ["a", "b", "c", "d"];
const LEASES = [1n, 2n, 3n];
const CLIENTS = ["c1", "c2"];
const text = new TextEncoder();
const b = (s: string): Uint8Array => text.encode(s);
const str = (u: Uint8Array): string => new TextDecoder().decode(u);

/** A step before it is made a command: sessions and incarnations are resolved against the model. */
type Step =
  | { readonly op: "put"; readonly key: number; readonly lease: number | undefined }
  | { readonly op: "del"; readonly key: number }
  | { readonly op: "grant"; readonly lease: number }
  | { readonly op: "revoke"; readonly lease: number }
  | { readonly op: "expire"; readonly leases: readonly number[]; readonly stale: boolean };
/** How the step uses a session: none, the next seq, a retry of the last, an older seq. */
type SessionUse = "none" | "next" | "retry" | "stale";

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant("put" as const), key: fc.nat(3), lease: opt(fc.nat(2)) }),
  fc.record({ op: fc.constant("del" as const), key: fc.nat(3) }),
  fc.record({ op: fc.constant("grant" as const), lease: fc.nat(2) }),
  fc.record({ op: fc.constant("revoke" as const), lease: fc.nat(2) }),
  fc.record({
    op: fc.constant("expire" as const),
    leases: fc.uniqueArray(fc.nat(2), { maxLength: 3 }),
    stale: fc.boolean(),
  }),
);
const sessionUseArb = fc.constantFrom<SessionUse>("none", "next", "next", "retry", "stale");

interface ModelState {
  readonly kv: Map<string, { value: string; lease: bigint }>;
  readonly leases: Map<bigint, number>; // id -> grant index
  readonly clients: Map<string, { seq: number; command: Command }>;
}

/** The command for `step`, without a session; an expiry names the live incarnation unless `stale`. */
function toCommand(step: Step, index: number, m: ModelState): Command {
  switch (step.op) {
    case "put": {
      const lease = step.lease === undefined ? NO_LEASE : leaseId(LEASES[step.lease]!);
      return { type: "put", request: { key: b(KEYS[step.key]!), value: b(`v${index}`), lease } };
    }
    case "del":
      return { type: "deleteRange", request: { key: b(KEYS[step.key]!) } };
    case "grant":
      return { type: "leaseGrant", id: leaseId(LEASES[step.lease]!), ttlSeconds: 10 };
    case "revoke":
      return { type: "leaseRevoke", id: leaseId(LEASES[step.lease]!) };
    case "expire":
      return {
        type: "leaseExpire",
        leases: step.leases.map((i) => {
          const id = LEASES[i]!;
          return { id: leaseId(id), grantIndex: (m.leases.get(id) ?? 0) + (step.stale ? 1000 : 0) };
        }),
      };
  }
}

/** Applies `cmd` to the model as a fresh (non-duplicate) command. */
function modelApply(m: ModelState, cmd: Command, index: number): void {
  const revokeKeys = (id: bigint) => {
    for (const [k, v] of [...m.kv]) if (v.lease === id) m.kv.delete(k);
    m.leases.delete(id);
  };
  switch (cmd.type) {
    case "put": {
      const lease = cmd.request.lease ?? NO_LEASE;
      if (lease !== NO_LEASE && !m.leases.has(lease)) return;
      m.kv.set(str(cmd.request.key), { value: str(cmd.request.value), lease });
      return;
    }
    case "deleteRange":
      m.kv.delete(str(cmd.request.key));
      return;
    case "leaseGrant":
      if (!m.leases.has(cmd.id)) m.leases.set(cmd.id, index);
      return;
    case "leaseRevoke":
      if (m.leases.has(cmd.id)) revokeKeys(cmd.id);
      return;
    case "leaseExpire":
      for (const l of cmd.leases) if (m.leases.get(l.id) === l.grantIndex) revokeKeys(l.id);
      return;
    default:
      throw new Error(`model: no ${cmd.type}`);
  }
}

describe("StateMachine vs a model", () => {
  it("keys, leases and session answers agree after every step", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(stepArb, sessionUseArb, fc.nat(1)), { maxLength: 40 }), (steps) => {
        const sm = new StateMachine();
        const m: ModelState = { kv: new Map(), leases: new Map(), clients: new Map() };
        const answers = new Map<string, unknown>(); // clientId -> answer of its last seq
        let index = 0;
        for (const [step, use, c] of steps) {
          index++;
          const clientId = CLIENTS[c]!;
          const known = m.clients.get(clientId);
          let cmd = toCommand(step, index, m);
          let expectReplay = false;
          let expectStale = false;
          if (step.op !== "expire" && use !== "none") {
            if (use === "next" || known === undefined) {
              cmd = { ...cmd, session: { clientId, seq: (known?.seq ?? 0) + 1 } } as Command;
            } else if (use === "retry") {
              cmd = known.command; // the very same request again
              expectReplay = true;
            } else if (known.seq > 1) {
              cmd = { ...cmd, session: { clientId, seq: known.seq - 1 } } as Command;
              expectStale = true;
            } else {
              cmd = known.command;
              expectReplay = true;
            }
          }
          const r = sm.apply(index, encodeCommand(cmd));
          expect(r.replayed).toBe(expectReplay);
          if (expectReplay) expect(r.result).toEqual(answers.get(clientId));
          if (expectStale) expect(r.result.kind).toBe("sessionStale");
          if (!expectReplay && !expectStale) {
            modelApply(m, cmd, index);
            if ("session" in cmd && cmd.session !== undefined) {
              m.clients.set(clientId, { seq: cmd.session.seq, command: cmd });
              answers.set(clientId, r.result);
            }
          }
          // Compare the whole observable state with the model.
          const all = sm.range({ key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) });
          if (!all.ok) throw new Error(all.error);
          const got = all.kvs.map((kv) => [str(kv.key), str(kv.value), kv.lease]);
          const want = [...m.kv].sort(([x], [y]) => (x < y ? -1 : 1)).map(([k, v]) => [k, v.value, v.lease]);
          expect(got).toEqual(want);
          expect(sm.leaseIds()).toEqual([...m.leases.keys()].sort((x, y) => (x < y ? -1 : 1)));
          for (const [id, grantIndex] of m.leases) {
            expect(sm.lease(leaseId(id))!.grantIndex).toBe(grantIndex);
            const keys = sm.leaseTimeToLive(leaseId(id), { keys: true })!.keys.map(str);
            const wantKeys = [...m.kv]
              .filter(([, v]) => v.lease === id)
              .map(([k]) => k)
              .sort();
            expect(keys).toEqual(wantKeys);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });
});

// ---------------------------------------------------------------------------
// 3. Determinism and snapshot/restore.

/** Commands over a small key and lease space, so that they interact; plus garbage and no-ops. */
const smallKey = fc.constantFrom(...KEYS).map(b);
const smallLease = fc.constantFrom(0n, ...LEASES).map(leaseId);
const smallSession = opt(
  fc.record({ clientId: fc.constantFrom(...CLIENTS), seq: fc.integer({ min: 1, max: 4 }) }),
);
const entryArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc
    .tuple(smallKey, bytesArb, smallLease, fc.boolean(), smallSession)
    .map(([key, value, lease, prevKv, s]) =>
      encodeCommand(withSession({ type: "put", request: { key, value, lease, prevKv } }, s)),
    ),
  fc
    .tuple(smallKey, opt(smallKey), smallSession)
    .map(([key, rangeEnd, s]) =>
      encodeCommand(withSession({ type: "deleteRange", request: { key, rangeEnd, prevKv: true } }, s)),
    ),
  fc.tuple(smallKey, smallKey, bytesArb, smallLease, smallSession).map(([k1, k2, value, lease, s]) =>
    encodeCommand(
      withSession(
        {
          type: "txn",
          request: {
            compare: [{ key: k1, result: "greater", target: "version", version: 0 }],
            success: [
              { type: "put", request: { key: k2, value, lease } },
              { type: "range", request: { key: k1, rangeEnd: Uint8Array.of(0) } },
            ],
            failure: [{ type: "deleteRange", request: { key: k1 } }],
          },
        },
        s,
      ),
    ),
  ),
  fc
    .tuple(fc.integer({ min: 0, max: 30 }), smallSession)
    .map(([r, s]) => encodeCommand(withSession({ type: "compact", revision: revision(r) }, s))),
  fc
    .tuple(smallLease, smallSession)
    .map(([id, s]) => encodeCommand(withSession({ type: "leaseGrant", id, ttlSeconds: 30 }, s))),
  fc
    .tuple(smallLease, smallSession)
    .map(([id, s]) => encodeCommand(withSession({ type: "leaseRevoke", id }, s))),
  fc
    .array(fc.record({ id: smallLease, grantIndex: fc.nat(40) }), { maxLength: 3 })
    .map((leases) => encodeCommand({ type: "leaseExpire", leases })),
  fc
    .array(fc.record({ id: smallLease, remainingTtlSeconds: fc.nat(40), grantIndex: fc.nat(40) }), {
      maxLength: 3,
    })
    .map((checkpoints) => encodeCommand({ type: "leaseCheckpoint", checkpoints })),
  // leasehold.v1: resource claims, fenced writes, counters and semaphores, on the same small spaces.
  fc
    .tuple(
      fc.constantFrom("r", "s"),
      fc.constantFrom("h1", "h2"),
      smallLease,
      fc.boolean(),
      fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
      smallSession,
    )
    .map(([resource, holder, id, wait, lockDelaySeconds, s]) =>
      encodeCommand(
        withSession({ type: "acquire", resource, holder, id, ttlSeconds: 30, wait, lockDelaySeconds }, s),
      ),
    ),
  fc
    .tuple(fc.constantFrom("r", "s"), fc.constantFrom("h1", "h2"), smallLease, smallSession)
    .map(([resource, holder, id, s]) =>
      encodeCommand(withSession({ type: "release", resource, id, holder }, s)),
    ),
  fc
    .tuple(fc.constantFrom("r", "s"), fc.integer({ min: 1, max: 30 }), smallKey, bytesArb, smallSession)
    .map(([resource, token, key, value, s]) =>
      encodeCommand(
        withSession({ type: "fencedPut", resource, token: revision(token), request: { key, value } }, s),
      ),
    ),
  fc
    .tuple(fc.constantFrom("c"), fc.bigInt({ min: -3n, max: 3n }), smallSession)
    .map(([counter, delta, s]) => encodeCommand(withSession({ type: "counterAdd", counter, delta }, s))),
  fc
    .tuple(
      fc.constantFrom("m"),
      fc.constantFrom("h1", "h2"),
      smallLease,
      fc.integer({ min: 1, max: 2 }),
      smallSession,
    )
    .map(([semaphore, holder, id, permits, s]) =>
      encodeCommand(
        withSession(
          { type: "semaphoreAcquire", semaphore, holder, id, ttlSeconds: 30, permits, wait: true },
          s,
        ),
      ),
    ),
  fc.constant(new Uint8Array(0)),
  fc.uint8Array({ maxLength: 8 }),
);

/** Everything a client of the machine can observe, as comparable data. */
function observe(sm: StateMachine): unknown {
  const ranges: unknown[] = [];
  for (let r = Math.max(sm.compactedRevision(), 1); r <= sm.currentRevision(); r++) {
    ranges.push(sm.range({ key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0), revision: revision(r) }));
  }
  const leases = sm.leaseIds().map((id: LeaseId) => [sm.lease(id), sm.leaseTimeToLive(id, { keys: true })]);
  const sessions = CLIENTS.map((c) => sm.session(c));
  const claims = {
    r: sm.resourceClaims("r"),
    s: sm.resourceClaims("s"),
    m: sm.semaphoreClaims("m"),
    delays: [sm.lockDelay("r"), sm.lockDelay("s")],
    holders: [sm.resourceHolder("r"), sm.resourceHolder("s")],
    c: sm.counterValue("c"),
  };
  return {
    applied: sm.appliedIndex(),
    current: sm.currentRevision(),
    compacted: sm.compactedRevision(),
    ranges,
    leases,
    sessions,
    claims,
    events: sm.eventsSince(sm.compactedRevision(), { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) }),
  };
}

describe("StateMachine: determinism and snapshots", () => {
  it("a machine restored at step k is indistinguishable from the original", () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { minLength: 1, maxLength: 40 }),
        fc.nat(),
        fc.nat(3),
        (entries, at, gap) => {
          const a = new StateMachine({ sessions: { idleEntriesMax: 12, sessionsMax: 2 } });
          const twin = new StateMachine({ sessions: { idleEntriesMax: 12, sessionsMax: 2 } });
          const k = at % (entries.length + 1);
          let b2: StateMachine | undefined;
          let index = 0;
          for (let i = 0; i < entries.length; i++) {
            if (i === k)
              b2 = StateMachine.restore(a.snapshot(), { sessions: { idleEntriesMax: 12, sessionsMax: 2 } });
            index += 1 + (i % 2) * gap; // the host may skip indexes (conf entries)
            const ra = a.apply(index, entries[i]!);
            expect(twin.apply(index, entries[i]!)).toEqual(ra);
            if (b2 !== undefined) expect(b2.apply(index, entries[i]!)).toEqual(ra);
          }
          b2 ??= StateMachine.restore(a.snapshot(), { sessions: { idleEntriesMax: 12, sessionsMax: 2 } });
          expect(observe(b2)).toEqual(observe(a));
          expect(str(b2.snapshot())).toBe(str(a.snapshot()));
          expect(str(twin.snapshot())).toBe(str(a.snapshot()));
        },
      ),
      { numRuns: RUNS },
    );
  });
});
