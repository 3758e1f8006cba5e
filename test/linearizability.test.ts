/**
 * Tests for the linearizability checker: hand-written histories it must accept or reject (stale reads,
 * phantom values, unknown outcomes, real-time order, equal-time ties, partitions), a non-register model to
 * show the search is generic, and a fast-check property: histories built around a real sequential
 * execution are accepted, and the same history with one read changed to a value never written is rejected.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkLinearizable,
  type HistoryOp,
  type LeaseInput,
  type LeaseOutput,
  type LinearizabilityResult,
  leaseModel,
  type Model,
  type RegisterInput,
  type RegisterOutput,
  type RegisterState,
  registerModel,
} from "../src/sim/linearizability.ts";

type RegisterOp = HistoryOp<RegisterInput, RegisterOutput>;

function write(
  clientId: number,
  key: string,
  value: string,
  callTime: number,
  returnTime: number,
): RegisterOp {
  return { clientId, input: { kind: "write", key, value }, callTime, output: { ok: true }, returnTime };
}

function read(
  clientId: number,
  key: string,
  value: string | undefined,
  callTime: number,
  returnTime: number,
): RegisterOp {
  return { clientId, input: { kind: "read", key }, callTime, output: { value }, returnTime };
}

/** A write whose outcome the client never learned (timed out). */
function unknownWrite(clientId: number, key: string, value: string, callTime: number): RegisterOp {
  return {
    clientId,
    input: { kind: "write", key, value },
    callTime,
    output: undefined,
    returnTime: Number.POSITIVE_INFINITY,
  };
}

function check(history: readonly RegisterOp[]): LinearizabilityResult {
  return checkLinearizable(registerModel, history);
}

/** The register model without its partition function: one search over all keys at once. */
const unpartitionedRegister: Model<RegisterState, RegisterInput, RegisterOutput> = {
  init: registerModel.init,
  step: registerModel.step,
  key: registerModel.key,
};

describe("checkLinearizable with the register model", () => {
  it("accepts an empty history", () => {
    expect(check([])).toEqual({ kind: "ok" });
  });

  it("accepts a sequential history", () => {
    const history = [
      read(1, "x", undefined, 0, 1),
      write(1, "x", "1", 2, 3),
      read(2, "x", "1", 4, 5),
      write(2, "x", "2", 6, 7),
      read(1, "x", "2", 8, 9),
    ];
    expect(check(history)).toEqual({ kind: "ok" });
  });

  it("accepts concurrent writes with a read that sees either", () => {
    for (const seen of ["1", "2"]) {
      const history = [write(1, "x", "1", 0, 10), write(2, "x", "2", 1, 11), read(3, "x", seen, 12, 13)];
      expect(check(history)).toEqual({ kind: "ok" });
    }
  });

  it("accepts a read concurrent with a write seeing the old or the new value", () => {
    for (const seen of [undefined, "1"]) {
      const history = [write(1, "x", "1", 0, 10), read(2, "x", seen, 2, 8)];
      expect(check(history)).toEqual({ kind: "ok" });
    }
  });

  it("rejects a stale read after a completed write", () => {
    const history = [write(1, "x", "1", 0, 1), write(1, "x", "2", 2, 3), read(2, "x", "1", 4, 5)];
    expect(check(history).kind).toBe("violation");
  });

  it("rejects a read of a value never written", () => {
    const history = [write(1, "x", "1", 0, 1), read(2, "x", "7", 2, 3)];
    expect(check(history).kind).toBe("violation");
  });

  it("accepts an unknown-outcome write that is later observed", () => {
    const history = [unknownWrite(1, "x", "1", 0), read(2, "x", undefined, 1, 2), read(2, "x", "1", 50, 51)];
    expect(check(history)).toEqual({ kind: "ok" });
  });

  it("accepts an unknown-outcome write that is never observed", () => {
    const history = [
      unknownWrite(1, "x", "1", 0),
      read(2, "x", undefined, 5, 6),
      read(3, "x", undefined, 7, 8),
    ];
    expect(check(history)).toEqual({ kind: "ok" });
  });

  it("treats an unknown outcome as open-ended even with a finite returnTime", () => {
    const timedOut: RegisterOp = { ...unknownWrite(1, "x", "1", 0), returnTime: 5 };
    const history = [timedOut, read(2, "x", undefined, 6, 7), read(2, "x", "1", 8, 9)];
    expect(check(history)).toEqual({ kind: "ok" });
  });

  it("rejects an unknown-outcome write observed before it was invoked", () => {
    const history = [read(2, "x", "1", 0, 1), unknownWrite(1, "x", "1", 2)];
    expect(check(history).kind).toBe("violation");
  });

  it("rejects reads that observe two writes in an order no linearization allows", () => {
    // w1 completes; w2 runs concurrently with one reader, who sees 2 and then, strictly later, 1 again.
    const history = [
      write(1, "x", "1", 0, 1),
      write(2, "x", "2", 2, 20),
      read(3, "x", "2", 3, 4),
      read(3, "x", "1", 5, 6),
    ];
    expect(check(history).kind).toBe("violation");
    // The same reads in the other order are fine: 1 before w2 takes effect, 2 after.
    const swapped = [
      write(1, "x", "1", 0, 1),
      write(2, "x", "2", 2, 20),
      read(3, "x", "1", 3, 4),
      read(3, "x", "2", 5, 6),
    ];
    expect(check(swapped)).toEqual({ kind: "ok" });
  });

  it("rejects two readers who disagree on the order of two concurrent writes", () => {
    const history = [
      write(1, "x", "1", 0, 100),
      write(2, "x", "2", 0, 100),
      read(3, "x", "1", 10, 11),
      read(3, "x", "2", 12, 13),
      read(4, "x", "2", 20, 21),
      read(4, "x", "1", 22, 23),
    ];
    expect(check(history).kind).toBe("violation");
  });

  it("treats a response and a call at the same time as concurrent", () => {
    // The write's response at t=5 does not precede the read's call at t=5, so the read may come first.
    expect(check([write(1, "x", "1", 0, 5), read(2, "x", undefined, 5, 6)])).toEqual({ kind: "ok" });
    // One tick later the write has strictly returned, so the read must see it.
    expect(check([write(1, "x", "1", 0, 5), read(2, "x", undefined, 6, 7)]).kind).toBe("violation");
  });

  it("checks each key's partition on its own", () => {
    const history = [
      write(1, "x", "1", 0, 10),
      write(2, "y", "a", 1, 2),
      read(3, "x", "1", 3, 4),
      read(3, "y", "a", 5, 6),
      write(2, "y", "b", 7, 8),
      read(1, "x", "1", 11, 12),
      read(1, "y", "b", 13, 14),
    ];
    expect(registerModel.partition?.(history).map((ops) => ops.length)).toEqual([3, 4]);
    expect(check(history)).toEqual({ kind: "ok" });
    expect(checkLinearizable(unpartitionedRegister, history)).toEqual({ kind: "ok" });

    const staleY = [...history, read(4, "y", "a", 15, 16)];
    const result = check(staleY);
    expect(result.kind).toBe("violation");
    if (result.kind === "violation") expect(result.partition).toBe(1);
    expect(checkLinearizable(unpartitionedRegister, staleY).kind).toBe("violation");
  });

  it("explains a violation with the longest prefix and the ops that could not be placed", () => {
    const history = [write(1, "x", "1", 0, 1), write(1, "x", "2", 2, 3), read(2, "x", "1", 4, 5)];
    const result = check(history);
    expect(result.kind).toBe("violation");
    if (result.kind !== "violation") return;
    expect(result.partition).toBe(0);
    expect(result.explanation).toContain("longest linearizable prefix has 2 ops");
    expect(result.explanation).toContain('1. client 1 [0, 1] write "x"="1" -> ok');
    expect(result.explanation).toContain('2. client 1 [2, 3] write "x"="2" -> ok');
    expect(result.explanation).toContain('model state after the prefix: [["x","2"]]');
    expect(result.explanation).toContain(
      '- client 2 [4, 5] read "x" -> "1": rejected by the model in this state',
    );
    expect(result.explanation).toContain('first pending response: client 2 [4, 5] read "x" -> "1"');
  });

  it("returns unknown when the search budget runs out", () => {
    const history = [write(1, "x", "1", 0, 10), write(2, "x", "2", 0, 10), read(3, "x", "2", 11, 12)];
    const result = checkLinearizable(registerModel, history, { maxSteps: 2 });
    expect(result.kind).toBe("unknown");
    if (result.kind === "unknown") expect(result.reason).toContain("budget of 2 steps exhausted");
  });

  it("asserts on a malformed history", () => {
    expect(() => check([write(1, "x", "1", 5, 4)])).toThrow(/callTime 5 is after returnTime 4/);
    expect(() => check([{ ...write(1, "x", "1", 0, 1), returnTime: Number.POSITIVE_INFINITY }])).toThrow(
      /known output must have a finite returnTime/,
    );
    expect(() => checkLinearizable(registerModel, [], { maxSteps: 0 })).toThrow(/maxSteps/);
  });

  it("checks a long history without recursion", () => {
    const history: RegisterOp[] = [];
    for (let i = 0; i < 5_000; i++) {
      const t = 4 * i;
      history.push(
        i % 2 === 0 ? write(i % 3, "x", `v${i}`, t, t + 2) : read(i % 3, "x", `v${i - 1}`, t, t + 2),
      );
    }
    expect(check(history)).toEqual({ kind: "ok" });
    history.push(read(9, "x", "v0", 20_000, 20_001));
    expect(check(history).kind).toBe("violation");
  });
});

/** A counter whose increments return the value after incrementing: shows the search is not register-bound. */
const counterModel: Model<number, "inc", number> = {
  init: () => 0,
  step: (state, _input, output) => ({ ok: output === undefined || output === state + 1, state: state + 1 }),
  key: (state) => String(state),
};

function inc(
  clientId: number,
  result: number,
  callTime: number,
  returnTime: number,
): HistoryOp<"inc", number> {
  return { clientId, input: "inc", callTime, output: result, returnTime };
}

function op(
  clientId: number,
  input: RegisterInput,
  output: RegisterOutput | undefined,
  callTime: number,
  returnTime: number,
): RegisterOp {
  return { clientId, input, callTime, output, returnTime: output === undefined ? Infinity : returnTime };
}

describe("the register model's delete and compare-and-swap", () => {
  it("accepts a delete that reports the value it removed, then reads of absence", () => {
    expect(
      check([
        write(1, "k", "a", 0, 1),
        op(2, { kind: "delete", key: "k" }, { prev: "a" }, 2, 3),
        read(1, "k", undefined, 4, 5),
      ]).kind,
    ).toBe("ok");
  });

  it("rejects a delete that claims a value the key did not hold", () => {
    expect(
      check([write(1, "k", "a", 0, 1), op(2, { kind: "delete", key: "k" }, { prev: "b" }, 2, 3)]).kind,
    ).toBe("violation");
  });

  it("rejects a read of a deleted value after the delete completed", () => {
    expect(
      check([
        write(1, "k", "a", 0, 1),
        op(2, { kind: "delete", key: "k" }, { prev: "a" }, 2, 3),
        read(1, "k", "a", 4, 5),
      ]).kind,
    ).toBe("violation");
  });

  it("accepts a cas that succeeds on the expected value and one that fails reporting the current", () => {
    expect(
      check([
        write(1, "k", "a", 0, 1),
        op(2, { kind: "cas", key: "k", expected: "a", value: "b" }, { succeeded: true, current: "a" }, 2, 3),
        op(3, { kind: "cas", key: "k", expected: "a", value: "c" }, { succeeded: false, current: "b" }, 4, 5),
        read(1, "k", "b", 6, 7),
      ]).kind,
    ).toBe("ok");
  });

  it("rejects two create-if-absent cas that both succeed", () => {
    const create = (c: number, v: string, t: number) =>
      op(
        c,
        { kind: "cas", key: "k", expected: undefined, value: v },
        { succeeded: true, current: undefined },
        t,
        t + 1,
      );
    expect(check([create(1, "a", 0), create(2, "b", 2)]).kind).toBe("violation");
  });

  it("rejects a cas that failed while its expected value was there", () => {
    expect(
      check([
        write(1, "k", "a", 0, 1),
        op(2, { kind: "cas", key: "k", expected: "a", value: "b" }, { succeeded: false, current: "a" }, 2, 3),
      ]).kind,
    ).toBe("violation");
  });

  it("settles an unknown cas whose value was observed as a success before the observation", () => {
    const history = [
      write(1, "k", "a", 0, 1),
      op(2, { kind: "cas", key: "k", expected: "a", value: "b" }, undefined, 2, 0),
      read(1, "k", "b", 10, 11),
      op(3, { kind: "delete", key: "k" }, { prev: "b" }, 12, 13),
    ];
    expect(check(history).kind).toBe("ok");
  });
});

type LeaseOp = HistoryOp<LeaseInput, LeaseOutput>;

function leaseOp(
  input: LeaseInput,
  output: LeaseOutput | undefined,
  callTime: number,
  returnTime: number,
): LeaseOp {
  return { clientId: 1, input, callTime, output, returnTime: output === undefined ? Infinity : returnTime };
}

describe("the lease model", () => {
  it("accepts grant, duplicate grant refused, expiry of that incarnation, grant again", () => {
    const history = [
      leaseOp({ kind: "grant", id: "7" }, { granted: true, grantIndex: 5 }, 0, 1),
      leaseOp({ kind: "grant", id: "7" }, { granted: false }, 2, 3),
      leaseOp({ kind: "expire", id: "7", grantIndex: 5 }, { expired: true }, 4, 5),
      leaseOp({ kind: "grant", id: "7" }, { granted: true, grantIndex: 9 }, 6, 7),
      leaseOp({ kind: "revoke", id: "7" }, { found: true }, 8, 9),
      leaseOp({ kind: "revoke", id: "7" }, { found: false }, 10, 11),
    ];
    expect(checkLinearizable(leaseModel, history).kind).toBe("ok");
  });

  it("rejects a grant of an id that is live", () => {
    const history = [
      leaseOp({ kind: "grant", id: "7" }, { granted: true, grantIndex: 5 }, 0, 1),
      leaseOp({ kind: "grant", id: "7" }, { granted: true, grantIndex: 6 }, 2, 3),
    ];
    expect(checkLinearizable(leaseModel, history).kind).toBe("violation");
  });

  it("does not let an expiry of an old incarnation remove a new one", () => {
    const history = [
      leaseOp({ kind: "grant", id: "7" }, { granted: true, grantIndex: 5 }, 0, 1),
      leaseOp({ kind: "revoke", id: "7" }, { found: true }, 2, 3),
      leaseOp({ kind: "grant", id: "7" }, { granted: true, grantIndex: 9 }, 4, 5),
      leaseOp({ kind: "expire", id: "7", grantIndex: 5 }, { expired: true }, 6, 7),
      leaseOp({ kind: "revoke", id: "7" }, { found: false }, 8, 9),
    ];
    expect(checkLinearizable(leaseModel, history).kind).toBe("violation");
  });

  it("rejects an expiry that reports removing a lease already revoked", () => {
    const history = [
      leaseOp({ kind: "grant", id: "7" }, { granted: true, grantIndex: 5 }, 0, 1),
      leaseOp({ kind: "revoke", id: "7" }, { found: true }, 2, 3),
      leaseOp({ kind: "expire", id: "7", grantIndex: 5 }, { expired: true }, 4, 5),
    ];
    expect(checkLinearizable(leaseModel, history).kind).toBe("violation");
  });

  it("rejects a revoke that found nothing while the lease was live", () => {
    const history = [
      leaseOp({ kind: "grant", id: "7" }, { granted: true, grantIndex: 5 }, 0, 1),
      leaseOp({ kind: "revoke", id: "7" }, { found: false }, 2, 3),
    ];
    expect(checkLinearizable(leaseModel, history).kind).toBe("violation");
  });
});

describe("checkLinearizable with another model", () => {
  it("accepts concurrent increments returning distinct values in either order", () => {
    expect(checkLinearizable(counterModel, [inc(1, 2, 0, 10), inc(2, 1, 1, 11)])).toEqual({ kind: "ok" });
  });

  it("rejects two increments that both return 1", () => {
    const result = checkLinearizable(counterModel, [inc(1, 1, 0, 10), inc(2, 1, 1, 11)]);
    expect(result.kind).toBe("violation");
    if (result.kind === "violation") expect(result.explanation).toContain('client 2 [1, 11] "inc" -> 1');
  });

  it("accepts an unknown increment only if some later result accounts for it", () => {
    const lost: HistoryOp<"inc", number> = {
      clientId: 1,
      input: "inc",
      callTime: 0,
      output: undefined,
      returnTime: Number.POSITIVE_INFINITY,
    };
    expect(checkLinearizable(counterModel, [lost, inc(2, 2, 5, 6)])).toEqual({ kind: "ok" });
    expect(checkLinearizable(counterModel, [lost, inc(2, 1, 5, 6)])).toEqual({ kind: "ok" });
    expect(checkLinearizable(counterModel, [lost, inc(2, 3, 5, 6)]).kind).toBe("violation");
  });
});

describe("checkLinearizable property", () => {
  /** How an op ended: known output, unknown but applied, or unknown and never applied (writes only). */
  type Fate = "known" | "unknownApplied" | "unknownLost";

  interface OpSpec {
    clientId: number;
    isWrite: boolean;
    key: string;
    callBefore: number;
    returnAfter: number;
    fate: Fate;
  }

  const opSpec: fc.Arbitrary<OpSpec> = fc.record({
    clientId: fc.nat({ max: 4 }),
    isWrite: fc.boolean(),
    key: fc.constantFrom("a", "b", "c"),
    callBefore: fc.nat({ max: 25 }),
    returnAfter: fc.nat({ max: 25 }),
    fate: fc.constantFrom<Fate>(
      "known",
      "known",
      "known",
      "known",
      "known",
      "known",
      "unknownApplied",
      "unknownLost",
    ),
  });

  const scenario = fc.record({
    specs: fc.array(opSpec, { minLength: 1, maxLength: 30 }),
    pick: fc.nat(),
  });

  /**
   * Runs the specs sequentially against a map, op i taking effect at time 10 * (i + 1), and wraps each in
   * a random interval around that point. The execution itself is a linearization, so the history is
   * linearizable by construction.
   */
  function buildHistory(specs: readonly OpSpec[]): RegisterOp[] {
    const store = new Map<string, string>();
    return specs.map((spec, i) => {
      const pointTime = 10 * (i + 1);
      const callTime = pointTime - spec.callBefore;
      const returnTime = spec.fate === "known" ? pointTime + spec.returnAfter : Number.POSITIVE_INFINITY;
      if (spec.isWrite) {
        const value = `v${i}`;
        if (spec.fate !== "unknownLost") store.set(spec.key, value);
        const op = write(spec.clientId, spec.key, value, callTime, returnTime);
        return spec.fate === "known" ? op : { ...op, output: undefined };
      }
      const op = read(spec.clientId, spec.key, store.get(spec.key), callTime, returnTime);
      return spec.fate === "known" ? op : { ...op, output: undefined };
    });
  }

  it("accepts histories of a real execution and rejects a read of a value never written", () => {
    fc.assert(
      fc.property(scenario, ({ specs, pick }) => {
        const history = buildHistory(specs);
        expect(check(history)).toEqual({ kind: "ok" });
        expect(checkLinearizable(unpartitionedRegister, history)).toEqual({ kind: "ok" });

        const knownReads = history.flatMap((op, i) =>
          op.input.kind === "read" && op.output !== undefined ? [i] : [],
        );
        if (knownReads.length === 0) return;
        const victim = knownReads[pick % knownReads.length]!;
        const perturbed = history.map((op, i) =>
          i === victim ? { ...op, output: { value: "never-written" } } : op,
        );
        expect(check(perturbed).kind).toBe("violation");
        expect(checkLinearizable(unpartitionedRegister, perturbed).kind).toBe("violation");
      }),
      { numRuns: 300, seed: 20240601 },
    );
  });
});
