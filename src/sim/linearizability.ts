/**
 * Linearizability checker for the client histories the simulator records.
 *
 * Role: decide whether a history of client operations (call time, response time, observed output) can be
 * explained by some total order of those operations that (1) respects real time — an op whose response
 * came strictly before another op's call is ordered first — and (2) is accepted, step by step, by a
 * sequential specification (`Model`). That is linearizability (Herlihy & Wing 1990).
 *
 * Algorithm: the search of Wing & Gong (1993) with Lowe's refinements ("Testing for linearizability",
 * 2017). The history becomes a doubly linked list of call and return events in time order. The search
 * walks the list from the head; at a call whose op the model accepts it "lifts" that op (removes its call
 * and return events, pushes it on an explicit stack) and restarts from the head; at a return it meets an op
 * that should already have been linearized, so it pops the last lifted op and tries the next candidate.
 * Each configuration (set of linearized ops as a bitset, model state's canonical key) is memoized and
 * expanded at most once, which is what makes the search practical. The search never recurses, so long
 * histories cannot overflow the call stack, and it is bounded by a step budget.
 *
 * Contract:
 * - An op with an unknown outcome (`output === undefined`) may take effect at any time after its call, or
 *   never: the search succeeds once every op with a known output is linearized.
 * - A response at time t precedes a call at time u only if t < u strictly; equal times are concurrent.
 * - If the model has `partition` (P-compositionality, Horn & Kroening 2015), each sub-history is checked
 *   alone; the first violating partition is reported, else "unknown" if any partition ran out of budget.
 * - A malformed history (callTime > returnTime, NaN or infinite call times, a known output with an
 *   infinite returnTime) is a bug in the caller and fails an assertion.
 */

import { assert, assertNever } from "../raft/assert.ts";

/** One completed or indeterminate client operation. Times are virtual-clock numbers. */
export interface HistoryOp<I, O> {
  clientId: number;
  input: I;
  /** Time the client invoked the op. */
  callTime: number;
  /**
   * The observed output, or undefined when the outcome is unknown (timed out / indeterminate). An op with
   * an unknown outcome is open-ended whatever its returnTime: its effect may land after the client gave up.
   */
  output: O | undefined;
  /** Time the response was observed; Infinity when the outcome is unknown. */
  returnTime: number;
}

/** A sequential specification. States must be treated as immutable values. */
export interface Model<S, I, O> {
  /** The state before any op. */
  init(): S;
  /**
   * Apply input to state; `output` undefined means unknown outcome: the step must accept any output and
   * just advance the state. Return ok=false if the observed output is impossible from this state.
   */
  step(state: S, input: I, output: O | undefined): { ok: boolean; state: S };
  /** Canonical string for memoization: equal states must give equal keys, distinct states distinct keys. */
  key(state: S): string;
  /** Optional: split a history into independent sub-histories (P-compositionality, e.g. per key). */
  partition?(ops: readonly HistoryOp<I, O>[]): HistoryOp<I, O>[][];
  /**
   * For failure reports: the op's input and output. The checker prefixes the client id and the time
   * interval itself, so this need not repeat them.
   */
  describeOp?(op: HistoryOp<I, O>): string;
}

/** The verdict on a history. `partition` indexes the model's partitions (0 without a partition function). */
export type LinearizabilityResult =
  | { kind: "ok" }
  | { kind: "violation"; partition: number; explanation: string }
  | { kind: "unknown"; reason: string }; // search budget exhausted

/** Default search budget per partition; one step is one visit of an event in the list. */
const checkStepsMaxDefault = 5_000_000;
/**
 * Largest sub-history the checker accepts. Memo keys are exact (the whole bitset), so each memoized
 * configuration costs ops/8 bytes: a 32,768-op partition without concurrency memoizes 32,768 of them,
 * about 128 MiB and a few seconds. Past that, partition the model or shorten the run.
 */
const partitionOpsMax = 32_768;
/** Ops of the longest linearizable prefix listed in an explanation (the latest ones). */
const explanationPrefixOpsMax = 20;
/** Candidate ops listed in an explanation. */
const explanationCandidatesMax = 10;
/** Characters of the model state's key shown in an explanation. */
const explanationStateCharsMax = 400;

/** End of the event list. */
const nil = -1;
/** The head sentinel of the event list. */
const head = 0;

/**
 * Checks that `history` is linearizable with respect to `model`. Returns "unknown" when a partition
 * needs more than `opts.maxSteps` search steps (default 5,000,000; the budget is per partition).
 */
export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  history: readonly HistoryOp<I, O>[],
  opts: { maxSteps?: number } = {},
): LinearizabilityResult {
  const stepsMax = opts.maxSteps ?? checkStepsMaxDefault;
  assert(Number.isSafeInteger(stepsMax) && stepsMax > 0, `maxSteps must be a positive integer: ${stepsMax}`);
  history.forEach(validateOp);

  const partitions = model.partition === undefined ? [history] : model.partition(history);
  let unknownReason: string | undefined;
  for (let p = 0; p < partitions.length; p++) {
    const outcome = checkPartition(model, partitions[p]!, stepsMax);
    switch (outcome.kind) {
      case "ok":
        break;
      case "violation":
        return {
          kind: "violation",
          partition: p,
          explanation: `partition ${p} of ${partitions.length}: ${outcome.explanation}`,
        };
      case "unknown":
        unknownReason ??= `partition ${p} of ${partitions.length}: ${outcome.reason}`;
        break;
      default:
        assertNever(outcome, "partition outcome");
    }
  }
  return unknownReason === undefined ? { kind: "ok" } : { kind: "unknown", reason: unknownReason };
}

/** Gateway check of one recorded op: anything wrong here is a bug in the recorder. */
function validateOp<I, O>(op: HistoryOp<I, O>, index: number): void {
  assert(Number.isFinite(op.callTime), `history[${index}]: callTime must be finite: ${op.callTime}`);
  assert(!Number.isNaN(op.returnTime), `history[${index}]: returnTime is NaN`);
  assert(
    op.callTime <= op.returnTime,
    `history[${index}]: callTime ${op.callTime} is after returnTime ${op.returnTime}`,
  );
  assert(
    op.output === undefined || Number.isFinite(op.returnTime),
    `history[${index}]: an op with a known output must have a finite returnTime`,
  );
}

type PartitionOutcome =
  | { kind: "ok" }
  | { kind: "violation"; explanation: string }
  | { kind: "unknown"; reason: string };

/**
 * The event list of one partition. Node 0 is the head sentinel; op i's call is node 1 + 2i and its return
 * is node 2 + 2i, so a call node is odd, its return is the next node id, and its op is (node - 1) >> 1.
 */
interface EventList {
  prev: Int32Array;
  next: Int32Array;
  /** Node ids in time order (head excluded). */
  order: Int32Array;
}

/** The time an op's response bounds its linearization point: never, for an unknown outcome. */
function effectiveReturnTime<I, O>(op: HistoryOp<I, O>): number {
  return op.output === undefined ? Number.POSITIVE_INFINITY : op.returnTime;
}

/** Orders events by time; at equal times calls come first, so equal call and return times overlap. */
function buildEventList<I, O>(ops: readonly HistoryOp<I, O>[]): EventList {
  const nodeCount = 2 * ops.length + 1;
  const times = new Float64Array(nodeCount);
  const ids: number[] = [];
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    times[1 + 2 * i] = op.callTime;
    times[2 + 2 * i] = effectiveReturnTime(op);
    ids.push(1 + 2 * i, 2 + 2 * i);
  }
  ids.sort((a, b) => {
    const ta = times[a]!;
    const tb = times[b]!;
    if (ta !== tb) return ta < tb ? -1 : 1; // not ta - tb: Infinity - Infinity is NaN
    const callA = a & 1;
    const callB = b & 1;
    if (callA !== callB) return callB - callA;
    return a - b;
  });

  const prev = new Int32Array(nodeCount);
  const next = new Int32Array(nodeCount);
  let last = head;
  prev[head] = nil;
  for (const id of ids) {
    next[last] = id;
    prev[id] = last;
    last = id;
  }
  next[last] = nil;
  return { prev, next, order: Int32Array.from(ids) };
}

/** Removes call node `call` and its return node (dancing links; undo in reverse order with `unlift`). */
function lift(list: EventList, call: number): void {
  const { prev, next } = list;
  const ret = call + 1;
  next[prev[call]!] = next[call]!;
  if (next[call] !== nil) prev[next[call]!] = prev[call]!;
  next[prev[ret]!] = next[ret]!;
  if (next[ret] !== nil) prev[next[ret]!] = prev[ret]!;
}

/** Reinserts what the matching `lift` removed; must be called in the reverse order of the lifts. */
function unlift(list: EventList, call: number): void {
  const { prev, next } = list;
  const ret = call + 1;
  next[prev[ret]!] = ret;
  if (next[ret] !== nil) prev[next[ret]!] = ret;
  next[prev[call]!] = call;
  if (next[call] !== nil) prev[next[call]!] = call;
}

/** The Wing & Gong / Lowe search over one sub-history. */
function checkPartition<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly HistoryOp<I, O>[],
  stepsMax: number,
): PartitionOutcome {
  const opCount = ops.length;
  if (opCount === 0) return { kind: "ok" };
  assert(
    opCount <= partitionOpsMax,
    `partition has ${opCount} ops, more than ${partitionOpsMax}: partition the model or shorten the run`,
  );

  const list = buildEventList(ops);
  let knownRemaining = 0;
  for (const op of ops) if (op.output !== undefined) knownRemaining++;

  // Linearized ops as a bitset of 16-bit words, so that it converts directly into a compact string key.
  // The bitset part of a memo key has a fixed length, so appending the state key is unambiguous.
  const bits = new Uint16Array(Math.ceil(opCount / 16));
  const memo = new Set<string>();
  // The stack: call nodes lifted so far and the model state before each of them.
  const stackCalls = new Int32Array(opCount);
  const stackStates: (S | undefined)[] = new Array<S | undefined>(opCount);
  let depth = 0;
  // Longest linearizable prefix seen: bestCalls[0, bestDepth). Invariant: it agrees with the stack on
  // [0, bestAgree) and bestAgree <= depth, so extending it copies only what changed (amortized O(1)).
  const bestCalls = new Int32Array(opCount);
  let bestDepth = 0;
  let bestAgree = 0;

  let state = model.init();
  let node = list.next[head]!;
  let steps = 0;
  while (knownRemaining > 0) {
    steps++;
    if (steps > stepsMax) {
      return {
        kind: "unknown",
        reason:
          `search budget of ${stepsMax} steps exhausted; longest linearizable prefix ${bestDepth} of ` +
          `${opCount} ops, ${memo.size} configurations explored`,
      };
    }
    // Every remaining call has its return after it, and a known op's return is finite, so the walk meets
    // a return before the end of the list while known ops remain.
    assert(node !== nil, "linearizability search ran off the event list");
    const op = (node - 1) >> 1;

    if ((node & 1) === 1) {
      const entry = ops[op]!;
      const result = model.step(state, entry.input, entry.output);
      if (result.ok) {
        const word = op >> 4;
        const mask = 1 << (op & 15);
        bits[word] = bits[word]! | mask;
        const key = String.fromCharCode(...bits) + model.key(result.state);
        if (!memo.has(key)) {
          memo.add(key);
          stackCalls[depth] = node;
          stackStates[depth] = state;
          depth++;
          state = result.state;
          lift(list, node);
          if (entry.output !== undefined) knownRemaining--;
          if (depth > bestDepth) {
            for (let j = bestAgree; j < depth; j++) bestCalls[j] = stackCalls[j]!;
            bestDepth = depth;
            bestAgree = depth;
          }
          node = list.next[head]!;
          continue;
        }
        bits[word] = bits[word]! & ~mask;
      }
      node = list.next[node]!;
      continue;
    }

    // A return whose op is not linearized yet: undo the last lift and try the next candidate after it.
    if (depth === 0) {
      return {
        kind: "violation",
        explanation: explainViolation(model, ops, list.order, bestCalls, bestDepth),
      };
    }
    depth--;
    if (bestAgree > depth) bestAgree = depth;
    const call = stackCalls[depth]!;
    state = stackStates[depth] as S; // stored by the matching push
    stackStates[depth] = undefined;
    const lifted = (call - 1) >> 1;
    bits[lifted >> 4] = bits[lifted >> 4]! & ~(1 << (lifted & 15));
    if (ops[lifted]!.output !== undefined) knownRemaining++;
    unlift(list, call);
    node = list.next[call]!;
  }
  return { kind: "ok" };
}

/**
 * Names the longest linearizable prefix the search found, the model state after it, and the ops that
 * could come next (called before the first pending response) but from which no linearization continues.
 */
function explainViolation<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly HistoryOp<I, O>[],
  order: Int32Array,
  bestCalls: Int32Array,
  bestDepth: number,
): string {
  const inPrefix = new Uint8Array(ops.length);
  let state = model.init();
  const lines: string[] = [];
  let unknownCount = 0;
  for (const op of ops) if (op.output === undefined) unknownCount++;
  lines.push(
    `not linearizable: ${ops.length} ops (${unknownCount} with unknown outcome); ` +
      `longest linearizable prefix has ${bestDepth} ops:`,
  );
  const shownFrom = Math.max(0, bestDepth - explanationPrefixOpsMax);
  if (shownFrom > 0) lines.push(`  ... ${shownFrom} earlier ops`);
  for (let j = 0; j < bestDepth; j++) {
    const opIndex = (bestCalls[j]! - 1) >> 1;
    const op = ops[opIndex]!;
    const result = model.step(state, op.input, op.output);
    assert(result.ok, "replaying the longest linearizable prefix failed");
    state = result.state;
    inPrefix[opIndex] = 1;
    if (j >= shownFrom) lines.push(`  ${j + 1}. ${describe(model, op)}`);
  }
  lines.push(`model state after the prefix: ${truncate(model.key(state), explanationStateCharsMax)}`);

  const candidates: number[] = [];
  let blocker: number | undefined;
  for (const node of order) {
    const opIndex = (node - 1) >> 1;
    if (inPrefix[opIndex] === 1) continue;
    if ((node & 1) === 0) {
      blocker = opIndex;
      break;
    }
    candidates.push(opIndex);
  }
  assert(blocker !== undefined, "a violation leaves a pending response");
  lines.push(
    `could not place next any of the ${candidates.length} ops called before the first pending response:`,
  );
  for (const opIndex of candidates.slice(0, explanationCandidatesMax)) {
    const op = ops[opIndex]!;
    const verdict = model.step(state, op.input, op.output).ok
      ? "accepted by the model, but no linearization continues from there"
      : "rejected by the model in this state";
    lines.push(`  - ${describe(model, op)}: ${verdict}`);
  }
  if (candidates.length > explanationCandidatesMax) {
    lines.push(`  ... ${candidates.length - explanationCandidatesMax} more`);
  }
  lines.push(`first pending response: ${describe(model, ops[blocker]!)}`);
  return lines.join("\n");
}

/** One op for a report: client, time interval, then the model's description (or JSON). */
function describe<S, I, O>(model: Model<S, I, O>, op: HistoryOp<I, O>): string {
  const returned = op.output === undefined ? "?" : String(op.returnTime);
  const body =
    model.describeOp === undefined
      ? `${toJson(op.input)} -> ${op.output === undefined ? "?" : toJson(op.output)}`
      : model.describeOp(op);
  return `client ${op.clientId} [${op.callTime}, ${returned}] ${body}`;
}

/** JSON that also prints bigints (int64 ids on the etcd wire are bigint). */
function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? `${v}n` : v)) ?? "undefined";
}

function truncate(text: string, charsMax: number): string {
  return text.length <= charsMax ? text : `${text.slice(0, charsMax)}... (${text.length} chars)`;
}

// ---------------------------------------------------------------------------------------------------------
// Register model

/**
 * Input of `registerModel`: one key's read, write (put), delete, or compare-and-swap (an etcd txn: compare
 * the value, or absence when `expected` is undefined, and put `value` if it holds).
 */
export type RegisterInput =
  | { kind: "read"; key: string }
  | { kind: "write"; key: string; value: string }
  | { kind: "delete"; key: string }
  | { kind: "cas"; key: string; expected: string | undefined; value: string };

/**
 * Output of `registerModel`: a read's value (undefined = key absent); a write's acknowledgement; the value
 * a delete removed (undefined = there was none); whether a cas succeeded and the value it found.
 */
export type RegisterOutput =
  | { value: string | undefined }
  | { ok: true }
  | { prev: string | undefined }
  | { succeeded: boolean; current: string | undefined };

/** State of `registerModel`: the value of every present key. Never mutated; a write copies it. */
export type RegisterState = ReadonlyMap<string, string>;

function withValue(state: RegisterState, key: string, value: string | undefined): RegisterState {
  if (state.get(key) === value) return state;
  const next = new Map(state);
  if (value === undefined) next.delete(key);
  else next.set(key, value);
  return next;
}

/**
 * A per-key register over string values with delete and compare-and-swap; every key starts absent.
 * `partition` splits the history by key (keys are independent registers), in order of each key's first
 * appearance.
 */
export const registerModel: Model<RegisterState, RegisterInput, RegisterOutput> = {
  init(): RegisterState {
    return new Map<string, string>();
  },

  step(state, input, output) {
    const current = state.get(input.key);
    switch (input.kind) {
      case "read": {
        if (output === undefined) return { ok: true, state };
        assert("value" in output, `register read recorded with another output: ${toJson(output)}`);
        return { ok: output.value === current, state };
      }
      case "write": {
        assert(output === undefined || "ok" in output, `register write recorded with: ${toJson(output)}`);
        return { ok: true, state: withValue(state, input.key, input.value) };
      }
      case "delete": {
        assert(output === undefined || "prev" in output, `register delete recorded with: ${toJson(output)}`);
        if (output !== undefined && output.prev !== current) return { ok: false, state };
        return { ok: true, state: withValue(state, input.key, undefined) };
      }
      case "cas": {
        assert(
          output === undefined || "succeeded" in output,
          `register cas recorded with: ${toJson(output)}`,
        );
        const holds = current === input.expected;
        if (output !== undefined && (output.succeeded !== holds || output.current !== current))
          return { ok: false, state };
        return { ok: true, state: holds ? withValue(state, input.key, input.value) : state };
      }
      default:
        return assertNever(input, "register input");
    }
  },

  key(state) {
    const entries = [...state].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return JSON.stringify(entries);
  },

  partition(ops) {
    const byKey = new Map<string, HistoryOp<RegisterInput, RegisterOutput>[]>();
    for (const op of ops) {
      const group = byKey.get(op.input.key);
      if (group === undefined) byKey.set(op.input.key, [op]);
      else group.push(op);
    }
    return [...byKey.values()].map(settleUnknownWrites);
  },

  describeOp(op) {
    const { input, output } = op;
    const key = toJson(input.key);
    const v = (x: string | undefined) => (x === undefined ? "absent" : toJson(x));
    switch (input.kind) {
      case "read":
        return `read ${key} -> ${output === undefined ? "?" : "value" in output ? v(output.value) : "?"}`;
      case "write":
        return `write ${key}=${toJson(input.value)} -> ${output === undefined ? "?" : "ok"}`;
      case "delete":
        return `delete ${key} -> ${output === undefined ? "?" : "prev" in output ? `prev ${v(output.prev)}` : "?"}`;
      case "cas": {
        const res =
          output === undefined || !("succeeded" in output)
            ? "?"
            : `${output.succeeded ? "succeeded" : "failed"}, found ${v(output.current)}`;
        return `cas ${key} ${v(input.expected)}->${toJson(input.value)} -> ${res}`;
      }
      default:
        return assertNever(input, "register input");
    }
  },
};

/** The value an op's known output shows the register held (undefined: it shows none, or absence). */
function observedValue(op: HistoryOp<RegisterInput, RegisterOutput>): string | undefined {
  const out = op.output;
  if (out === undefined) return undefined;
  if ("value" in out) return out.value;
  if ("prev" in out) return out.prev;
  if ("current" in out) return out.current;
  return undefined;
}

/**
 * Shrinks the search for one key's history, where written values (write and cas) are unique: an
 * unknown-outcome write or cas whose value no op observed is equivalent to one that never happened, so it
 * is dropped (while the register held it, no op could have run: every other op's output shows the value,
 * or, for a write, replaces it); one whose value was observed must have taken effect before the first
 * observing op returned, so it becomes a completed write (a successful cas) returning then. Both are exact
 * (no history changes verdict); without them a few dozen unknown writes make the search exponential.
 * Observations: a read's value, a delete's removed value, a cas's found value.
 */
function settleUnknownWrites(
  ops: HistoryOp<RegisterInput, RegisterOutput>[],
): HistoryOp<RegisterInput, RegisterOutput>[] {
  const writers = new Map<string, number>();
  const firstSeen = new Map<string, number>();
  for (const op of ops) {
    if (op.input.kind === "write" || op.input.kind === "cas")
      writers.set(op.input.value, (writers.get(op.input.value) ?? 0) + 1);
    const v = observedValue(op);
    if (v !== undefined)
      firstSeen.set(v, Math.min(firstSeen.get(v) ?? Number.POSITIVE_INFINITY, op.returnTime));
  }
  const out: HistoryOp<RegisterInput, RegisterOutput>[] = [];
  for (const op of ops) {
    const input = op.input;
    if (
      (input.kind !== "write" && input.kind !== "cas") ||
      op.output !== undefined ||
      writers.get(input.value) !== 1
    ) {
      out.push(op);
      continue;
    }
    const seen = firstSeen.get(input.value);
    if (seen === undefined) continue;
    // Observed before it was even called: keep it unknown so the search reports the violation.
    if (seen < op.callTime) out.push(op);
    else if (input.kind === "write") out.push({ ...op, output: { ok: true }, returnTime: seen });
    else out.push({ ...op, output: { succeeded: true, current: input.expected }, returnTime: seen });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Lease model

/**
 * Input of `leaseModel`: a client's grant of an explicit lease id or revoke of one, or the leader's expiry
 * of one incarnation of a lease (named by the log index of its grant, as the leaseExpire command does).
 */
export type LeaseInput =
  | { kind: "grant"; id: string }
  | { kind: "revoke"; id: string }
  | { kind: "expire"; id: string; grantIndex: number };

/** Output of `leaseModel`: a grant's incarnation or "exists"; whether a revoke found the lease. */
export type LeaseOutput =
  | { granted: true; grantIndex: number }
  | { granted: false }
  | { found: boolean }
  | { expired: true };

/** State of `leaseModel`: live lease id -> its incarnation (-1: granted by an op whose outcome is unknown). */
export type LeaseState = ReadonlyMap<string, number>;

/**
 * Leases as the lease table exposes them to clients: a grant of a live id fails, a revoke finds the lease
 * or not, an expiry removes the named incarnation only (an incarnation granted with an unknown outcome
 * matches any expiry), and one that reports removing it must find it live. Partitioned by lease id; ids
 * with no grant in the history are left out.
 */
export const leaseModel: Model<LeaseState, LeaseInput, LeaseOutput> = {
  init(): LeaseState {
    return new Map<string, number>();
  },

  step(state, input, output) {
    const live = state.get(input.id);
    const without = (): LeaseState => {
      const next = new Map(state);
      next.delete(input.id);
      return next;
    };
    switch (input.kind) {
      case "grant": {
        assert(output === undefined || "granted" in output, `lease grant recorded with: ${toJson(output)}`);
        if (output === undefined) {
          if (live !== undefined) return { ok: true, state };
          return { ok: true, state: new Map(state).set(input.id, -1) };
        }
        if (!output.granted) return { ok: live !== undefined, state };
        if (live !== undefined) return { ok: false, state };
        return { ok: true, state: new Map(state).set(input.id, output.grantIndex) };
      }
      case "revoke": {
        assert(output === undefined || "found" in output, `lease revoke recorded with: ${toJson(output)}`);
        if (output !== undefined && output.found !== (live !== undefined)) return { ok: false, state };
        return { ok: true, state: live === undefined ? state : without() };
      }
      case "expire": {
        const matches = live !== undefined && (live === input.grantIndex || live === -1);
        // A known output says the expiry removed the lease: it must have been live then.
        if (output !== undefined) return matches ? { ok: true, state: without() } : { ok: false, state };
        return { ok: true, state: matches ? without() : state };
      }
      default:
        return assertNever(input, "lease input");
    }
  },

  key(state) {
    return JSON.stringify([...state].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  },

  partition(ops) {
    const byId = new Map<string, HistoryOp<LeaseInput, LeaseOutput>[]>();
    for (const op of ops) {
      const group = byId.get(op.input.id);
      if (group === undefined) byId.set(op.input.id, [op]);
      else group.push(op);
    }
    // A lease whose grant is not in the history (an id the table chose) has nothing to check against.
    return [...byId.values()].filter((ops) => ops.some((op) => op.input.kind === "grant"));
  },

  describeOp(op) {
    const { input, output } = op;
    const res = output === undefined ? "?" : toJson(output);
    if (input.kind === "expire") return `expire ${input.id}@${input.grantIndex} -> ${res}`;
    return `${input.kind} ${input.id} -> ${res}`;
  },
};
