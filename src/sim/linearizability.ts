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

/** Input of `registerModel`: read or write one key. */
export type RegisterInput = { kind: "read"; key: string } | { kind: "write"; key: string; value: string };

/** Output of `registerModel`: a read's value (undefined = key absent), or a write's acknowledgement. */
export type RegisterOutput = { value: string | undefined } | { ok: true };

/** State of `registerModel`: the value of every present key. Never mutated; a write copies it. */
export type RegisterState = ReadonlyMap<string, string>;

/**
 * A per-key read/write register over string values; every key starts absent. `partition` splits the
 * history by key (keys are independent registers), in order of each key's first appearance.
 */
export const registerModel: Model<RegisterState, RegisterInput, RegisterOutput> = {
  init(): RegisterState {
    return new Map<string, string>();
  },

  step(state, input, output) {
    switch (input.kind) {
      case "read": {
        if (output === undefined) return { ok: true, state };
        assert("value" in output, `register read recorded with a write's output: ${toJson(output)}`);
        return { ok: output.value === state.get(input.key), state };
      }
      case "write": {
        assert(
          output === undefined || "ok" in output,
          `register write recorded with a read's output: ${toJson(output)}`,
        );
        if (state.get(input.key) === input.value) return { ok: true, state };
        const next = new Map(state);
        next.set(input.key, input.value);
        return { ok: true, state: next };
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
    switch (input.kind) {
      case "read": {
        if (output === undefined) return `read ${toJson(input.key)} -> ?`;
        const value = "value" in output ? output.value : undefined;
        return `read ${toJson(input.key)} -> ${value === undefined ? "absent" : toJson(value)}`;
      }
      case "write":
        return `write ${toJson(input.key)}=${toJson(input.value)} -> ${output === undefined ? "?" : "ok"}`;
      default:
        return assertNever(input, "register input");
    }
  },
};

/**
 * Shrinks the search for one key's history, where write values are unique:
 * an unknown-outcome write whose value no read observed is equivalent to one
 * that never happened, so it is dropped; one whose value was observed must
 * have taken effect before the first observing read returned, so it becomes a
 * completed write returning then. Both are exact (no history changes verdict);
 * without them a few dozen unknown writes make the search exponential.
 */
function settleUnknownWrites(
  ops: HistoryOp<RegisterInput, RegisterOutput>[],
): HistoryOp<RegisterInput, RegisterOutput>[] {
  const writers = new Map<string, number>();
  const firstSeen = new Map<string, number>();
  for (const op of ops) {
    if (op.input.kind === "write") writers.set(op.input.value, (writers.get(op.input.value) ?? 0) + 1);
    else if (op.output !== undefined && "value" in op.output && op.output.value !== undefined) {
      const v = op.output.value;
      firstSeen.set(v, Math.min(firstSeen.get(v) ?? Number.POSITIVE_INFINITY, op.returnTime));
    }
  }
  const out: HistoryOp<RegisterInput, RegisterOutput>[] = [];
  for (const op of ops) {
    if (op.input.kind !== "write" || op.output !== undefined || writers.get(op.input.value) !== 1) {
      out.push(op);
      continue;
    }
    const seen = firstSeen.get(op.input.value);
    if (seen === undefined) continue;
    // Observed before it was even called: keep it unknown so the search reports the violation.
    if (seen < op.callTime) out.push(op);
    else out.push({ ...op, output: { ok: true }, returnTime: seen });
  }
  return out;
}
