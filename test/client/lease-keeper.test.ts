/**
 * The client lease state machine (src/client/lease-keeper.ts) on virtual time.
 *
 * - Transitions one by one on FakeClock (a priority queue of timers; advancing
 *   time runs them in order, letting promise reactions run after each): TTL 3 s,
 *   rho 1%, granted by a request sent at 0, so the local deadline is 2970, the
 *   grace period ends at 5970, renewals are due every 1000 ms and the backoff
 *   runs 100, 200, 400, 500 (TTL/6) ms.
 * - A simulation property (fast-check): random request delays, lost requests
 *   and answers, leader changes (renewals fail while there is no leader; the
 *   new leader extends every lease it knows by its TTL, as our server does) and
 *   client clock drift within rho, against a model server that knows the real
 *   expiry. Safety: whenever the keeper says valid, the server's lease is
 *   alive. Liveness: on a reliable network it never leaves valid. The safety
 *   property is shown to fail for a keeper that ignores drift (rho 0).
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CancelledError, DeadlineExceededError, LeaseLostError } from "../../src/client/errors.ts";
import {
  type KeeperClock,
  LeaseKeeper,
  type LeaseKeeperOptions,
  type LeaseState,
  type LeaseTransition,
  type RenewAnswer,
} from "../../src/client/lease-keeper.ts";

/** Lets every pending promise reaction run (a macrotask turn; no real time waited for). */
function settle(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

interface Timer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

/** Timers in (time, creation order), as a sorted array: a priority queue that is easy to read. */
class TimerQueue {
  #seq = 0;
  readonly #timers: Timer[] = [];

  add(at: number, fn: () => void): Timer {
    const timer = { at, seq: this.#seq++, fn };
    let i = this.#timers.length;
    while (i > 0 && this.#timers[i - 1]!.at > at) i--;
    this.#timers.splice(i, 0, timer);
    return timer;
  }

  remove(handle: unknown): void {
    const i = this.#timers.indexOf(handle as Timer);
    if (i >= 0) this.#timers.splice(i, 1);
  }

  peek(): Timer | undefined {
    return this.#timers[0];
  }

  shift(): Timer | undefined {
    return this.#timers.shift();
  }

  get size(): number {
    return this.#timers.length;
  }
}

/** A virtual monotonic clock for the unit tests. */
class FakeClock implements KeeperClock {
  #now: number;
  readonly timers = new TimerQueue();

  constructor(startMs = 0) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimer(ms: number, fn: () => void): unknown {
    return this.timers.add(this.#now + Math.max(0, ms), fn);
  }

  clearTimer(handle: unknown): void {
    this.timers.remove(handle);
  }

  /** Moves time without running any timer: an event loop that was blocked. */
  jump(ms: number): void {
    this.#now += ms;
  }

  /** Runs every timer due up to `t` in order, settling promise reactions after each; then sets now = t. */
  async advanceTo(t: number): Promise<void> {
    await settle();
    for (let timer = this.timers.peek(); timer !== undefined && timer.at <= t; timer = this.timers.peek()) {
      this.timers.shift();
      this.#now = Math.max(this.#now, timer.at);
      timer.fn();
      await settle();
    }
    this.#now = Math.max(this.#now, t);
    await settle();
  }
}

/** One call of `renew` by the keeper. */
interface RenewCall {
  readonly sentAt: number;
  readonly signal: AbortSignal;
  answer(a: RenewAnswer): void;
  fail(err?: Error): void;
}

/**
 * A keeper on `clock` whose renewals are recorded; `policy` answers each call
 * at once ("hang" leaves it to the test). TTL 3 s and grant at 0 unless told.
 */
function keeperWith(
  clock: FakeClock,
  policy: (call: RenewCall) => RenewAnswer | Error | "hang" = () => "hang",
  options: Partial<LeaseKeeperOptions> = {},
) {
  const calls: RenewCall[] = [];
  const events: LeaseTransition[] = [];
  const keeper = new LeaseKeeper({
    clock,
    ttlSeconds: 3,
    grantedAt: 0,
    renew: (signal) =>
      new Promise<RenewAnswer>((resolve, reject) => {
        const call: RenewCall = {
          sentAt: clock.now(),
          signal,
          answer: resolve,
          fail: (err = new Error("etcdserver: no leader")) => reject(err),
        };
        calls.push(call);
        const p = policy(call);
        if (p instanceof Error) reject(p);
        else if (p !== "hang") resolve(p);
      }),
    ...options,
  });
  for (const s of ["valid", "jeopardy", "expired", "released", "closed"] as const) {
    keeper.on(s, (_reason, t) => events.push(t));
  }
  return { keeper, calls, events };
}

const renewed = (ttlSeconds = 3): RenewAnswer => ({ kind: "renewed", ttlSeconds });

describe("LeaseKeeper transitions", () => {
  it("stays valid while every renewal is answered, renewing TTL/3 after each send", async () => {
    const clock = new FakeClock();
    const { keeper, calls, events } = keeperWith(clock);
    const signal = keeper.signal;
    expect(keeper.state).toBe("valid");
    expect(keeper.validUntil()).toBe(2970);
    await clock.advanceTo(999);
    expect(calls).toHaveLength(0);
    for (let i = 0; i < 30; i++) {
      const due = 1000 * (i + 1);
      await clock.advanceTo(due);
      expect(calls).toHaveLength(i + 1);
      expect(calls[i]!.sentAt).toBe(due);
      await clock.advanceTo(due + 40);
      calls[i]!.answer(renewed());
      await clock.advanceTo(due + 40);
      expect(keeper.state).toBe("valid");
      expect(keeper.validUntil()).toBe(due + 2970);
    }
    expect(events).toEqual([]);
    expect(keeper.signal).toBe(signal);
    expect(signal.aborted).toBe(false);
  });

  it("enters jeopardy exactly at the local deadline with no answered renewal, aborting the signal", async () => {
    const clock = new FakeClock();
    const { keeper, calls, events } = keeperWith(clock, () => new Error("etcdserver: no leader"));
    const signal = keeper.signal;
    await clock.advanceTo(2969);
    expect(keeper.state).toBe("valid");
    expect(signal.aborted).toBe(false);
    await clock.advanceTo(2970);
    expect(keeper.state).toBe("jeopardy");
    expect(events).toEqual([{ from: "valid", to: "jeopardy", reason: "deadline", atMs: 2970 }]);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBeInstanceOf(LeaseLostError);
    expect((signal.reason as LeaseLostError).state).toBe("jeopardy");
    expect(keeper.validUntil()).toBe(Number.NEGATIVE_INFINITY);
    expect(keeper.signal.aborted).toBe(true);
    // The schedule: backoff 100, 200, 400, then TTL/6 = 500; one last try 100 ms before the deadline.
    expect(calls.map((c) => c.sentAt)).toEqual([1000, 1100, 1300, 1700, 2200, 2700, 2870]);
    // Still trying during the grace period, at the capped backoff, with a last try before it ends.
    await clock.advanceTo(5969);
    expect(calls.map((c) => c.sentAt).slice(7)).toEqual([3370, 3870, 4370, 4870, 5370, 5870]);
    expect(keeper.state).toBe("jeopardy");
  });

  it("becomes valid again when a renewal sent at s answers with s + TTL·(1 − rho) still ahead", async () => {
    const clock = new FakeClock();
    const { keeper, calls, events } = keeperWith(clock);
    const first = keeper.signal;
    await clock.advanceTo(2000); // the attempt sent at 1000 times out (TTL/3)
    expect(calls[0]!.signal.aborted).toBe(true);
    expect(calls[0]!.signal.reason).toBeInstanceOf(DeadlineExceededError);
    await clock.advanceTo(2100);
    expect(calls.map((c) => c.sentAt)).toEqual([1000, 2100]);
    await clock.advanceTo(3050);
    expect(keeper.state).toBe("jeopardy");
    calls[1]!.answer(renewed()); // sent at 2100, before the deadline; answered after it
    await settle();
    expect(keeper.state).toBe("valid");
    expect(keeper.validUntil()).toBe(2100 + 2970);
    expect(events.map((e) => [e.to, e.reason, e.atMs])).toEqual([
      ["jeopardy", "deadline", 2970],
      ["valid", "renewed", 3050],
    ]);
    const second = keeper.signal;
    expect(second).not.toBe(first);
    expect(first.aborted).toBe(true);
    expect(second.aborted).toBe(false);
    await clock.advanceTo(3100);
    expect(calls.map((c) => c.sentAt)).toEqual([1000, 2100, 3100]);
  });

  it("counts from the send time, never from the answer's arrival", async () => {
    const clock = new FakeClock();
    const { keeper, calls } = keeperWith(clock);
    await clock.advanceTo(1000);
    await clock.advanceTo(1900);
    calls[0]!.answer(renewed());
    await settle();
    expect(keeper.validUntil()).toBe(3970);
    await clock.advanceTo(2000); // the next is due 1000 after the send
    expect(calls.map((c) => c.sentAt)).toEqual([1000, 2000]);
  });

  it("stays in jeopardy when the answer comes after its own s + TTL·(1 − rho)", async () => {
    const clock = new FakeClock();
    const { keeper, calls } = keeperWith(clock, () => "hang", { attemptTimeoutMs: 60_000 });
    await clock.advanceTo(3980);
    expect(keeper.state).toBe("jeopardy");
    calls[0]!.answer(renewed()); // sent at 1000: good until 3970, already past
    await settle();
    expect(keeper.state).toBe("jeopardy");
    expect(keeper.signal.aborted).toBe(true);
    await clock.advanceTo(4080); // retried after the backoff
    expect(calls.map((c) => c.sentAt)).toEqual([1000, 4080]);
    calls[1]!.answer(renewed());
    await settle();
    expect(keeper.state).toBe("valid");
  });

  it("expires when the grace period ends, and then stops every timer and attempt", async () => {
    const clock = new FakeClock();
    const { keeper, calls, events } = keeperWith(clock, () => new Error("no leader"));
    await clock.advanceTo(5969);
    expect(keeper.state).toBe("jeopardy");
    await clock.advanceTo(5970);
    expect(keeper.state).toBe("expired");
    expect(events.map((e) => [e.from, e.to, e.reason, e.atMs])).toEqual([
      ["valid", "jeopardy", "deadline", 2970],
      ["jeopardy", "expired", "graceEnded", 5970],
    ]);
    expect(clock.timers.size).toBe(0);
    const n = calls.length;
    await clock.advanceTo(60_000);
    expect(calls).toHaveLength(n);
    expect(keeper.validUntil()).toBe(Number.NEGATIVE_INFINITY);
  });

  it("honours graceMs", async () => {
    const clock = new FakeClock();
    const { keeper } = keeperWith(clock, () => new Error("no leader"), { graceMs: 500 });
    await clock.advanceTo(3469);
    expect(keeper.state).toBe("jeopardy");
    await clock.advanceTo(3470);
    expect(keeper.state).toBe("expired");
  });

  it("expires at once when the server says gone, from valid or from jeopardy", async () => {
    const clock = new FakeClock();
    const { keeper, calls, events } = keeperWith(clock);
    const signal = keeper.signal;
    await clock.advanceTo(1010);
    calls[0]!.answer({ kind: "gone" });
    await settle();
    expect(keeper.state).toBe("expired");
    expect(events).toEqual([{ from: "valid", to: "expired", reason: "gone", atMs: 1010 }]);
    expect((signal.reason as LeaseLostError).state).toBe("expired");
    expect(clock.timers.size).toBe(0);

    const clock2 = new FakeClock();
    const k2 = keeperWith(clock2, () => "hang", { attemptTimeoutMs: 60_000 });
    await clock2.advanceTo(3000);
    expect(k2.keeper.state).toBe("jeopardy");
    k2.calls[0]!.answer(renewed(0)); // a TTL of 0: etcd's answer for a lease it does not have
    await settle();
    expect(k2.keeper.state).toBe("expired");
    expect(k2.events.at(-1)).toMatchObject({ from: "jeopardy", to: "expired", reason: "gone" });
    expect(clock2.timers.size).toBe(0);
  });

  it("release stops every timer, aborts the attempt in flight and ignores its late answer", async () => {
    const clock = new FakeClock();
    const { keeper, calls, events } = keeperWith(clock);
    const signal = keeper.signal;
    await clock.advanceTo(1500);
    expect(calls).toHaveLength(1);
    keeper.release();
    expect(keeper.state).toBe("released");
    expect(events).toEqual([{ from: "valid", to: "released", reason: "released", atMs: 1500 }]);
    expect(calls[0]!.signal.aborted).toBe(true);
    expect(calls[0]!.signal.reason).toBeInstanceOf(CancelledError);
    expect((signal.reason as LeaseLostError).state).toBe("released");
    expect(clock.timers.size).toBe(0);
    calls[0]!.answer(renewed());
    await clock.advanceTo(20_000);
    expect(keeper.state).toBe("released");
    expect(calls).toHaveLength(1);
    keeper.release();
    keeper.close();
    await keeper.renewNow();
    expect(events).toHaveLength(1);
    expect(calls).toHaveLength(1);
  });

  it("close ends in closed, from jeopardy too", async () => {
    const clock = new FakeClock();
    const { keeper, events } = keeperWith(clock, () => new Error("x"));
    await clock.advanceTo(3000);
    keeper.close();
    expect(keeper.state).toBe("closed");
    expect(events.at(-1)).toEqual({ from: "jeopardy", to: "closed", reason: "closed", atMs: 3000 });
    expect(clock.timers.size).toBe(0);
  });

  it("reports jeopardy after a blocked event loop even before any timer runs", () => {
    const clock = new FakeClock();
    const { keeper, events } = keeperWith(clock);
    const signal = keeper.signal;
    clock.jump(2969);
    expect(keeper.state).toBe("valid");
    clock.jump(1);
    expect(signal.aborted).toBe(false); // nothing looked yet
    expect(keeper.validUntil()).toBe(Number.NEGATIVE_INFINITY);
    expect(signal.aborted).toBe(true);
    expect(keeper.state).toBe("jeopardy");
    clock.jump(3000);
    expect(keeper.state).toBe("expired");
    expect(events.map((e) => e.to)).toEqual(["jeopardy", "expired"]);
  });

  it("keeps one renewal in flight at a time; renewNow resolves when it settles", async () => {
    const clock = new FakeClock();
    const { keeper, calls } = keeperWith(clock);
    await clock.advanceTo(10);
    const a = keeper.renewNow();
    const b = keeper.renewNow();
    await clock.advanceTo(900);
    expect(calls.map((c) => c.sentAt)).toEqual([10]);
    let done = false;
    void Promise.all([a, b]).then(() => {
      done = true;
    });
    await settle();
    expect(done).toBe(false);
    calls[0]!.answer(renewed());
    await settle();
    expect(done).toBe(true);
    expect(keeper.validUntil()).toBe(2980);
  });

  it("ignores the late answer of an attempt abandoned at its timeout", async () => {
    const clock = new FakeClock();
    const { keeper, calls } = keeperWith(clock);
    await clock.advanceTo(2050);
    expect(calls.map((c) => c.sentAt)).toEqual([1000]);
    expect(calls[0]!.signal.aborted).toBe(true);
    calls[0]!.answer(renewed(30));
    await settle();
    expect(keeper.validUntil()).toBe(2970);
    await clock.advanceTo(2100);
    expect(calls.map((c) => c.sentAt)).toEqual([1000, 2100]);
  });

  it("starts in jeopardy, renewing at once, when the grant is already past its deadline", async () => {
    const clock = new FakeClock(4000);
    const { keeper, calls } = keeperWith(clock);
    expect(keeper.state).toBe("jeopardy");
    expect(keeper.signal.aborted).toBe(true);
    await clock.advanceTo(4000);
    expect(calls.map((c) => c.sentAt)).toEqual([4000]);
    const late = keeperWith(new FakeClock(7000));
    expect(late.keeper.state).toBe("expired");
  });

  it("lets a listener call back into the keeper", async () => {
    const clock = new FakeClock();
    const { keeper, events } = keeperWith(clock);
    keeper.on("jeopardy", () => keeper.release());
    await clock.advanceTo(3000);
    expect(keeper.state).toBe("released");
    expect(events.map((e) => `${e.from}->${e.to}`)).toEqual(["valid->jeopardy", "jeopardy->released"]);
    expect(clock.timers.size).toBe(0);
  });

  it("refuses impossible options", () => {
    const clock = new FakeClock(100);
    const renew = async (): Promise<RenewAnswer> => renewed();
    expect(() => new LeaseKeeper({ clock, ttlSeconds: 0, grantedAt: 0, renew })).toThrow(RangeError);
    expect(() => new LeaseKeeper({ clock, ttlSeconds: 1, grantedAt: 0, rho: 1, renew })).toThrow(RangeError);
    expect(() => new LeaseKeeper({ clock, ttlSeconds: 1, grantedAt: 200, renew })).toThrow(RangeError);
    expect(() => new LeaseKeeper({ clock, ttlSeconds: 1, grantedAt: 0, graceMs: -1, renew })).toThrow(
      RangeError,
    );
  });

  it("describes itself deterministically", async () => {
    const clock = new FakeClock();
    const { keeper } = keeperWith(clock);
    expect(keeper.describe()).toBe("valid until 2970 (ttl 3s, sent at 0, rho 0.01)");
    clock.jump(3000);
    expect(keeper.describe()).toBe("jeopardy until 5970 (ttl 3s, sent at 0, rho 0.01)");
    keeper.close();
    expect(keeper.describe()).toBe("closed (ttl 3s, sent at 0, rho 0.01)");
  });
});

// ---------------------------------------------------------------- simulation

/** What happens to one renewal request. */
interface Fate {
  readonly reqDelayMs: number;
  readonly ansDelayMs: number;
  readonly reqLost: boolean;
  readonly ansLost: boolean;
}

/** A period with no leader: renewals are refused; afterwards the new leader extends every live lease. */
interface Outage {
  readonly afterMs: number;
  readonly durationMs: number;
}

/** A stretch of real time during which the client's clock runs at `rate` (within 1 ± rho). */
interface Drift {
  readonly durationMs: number;
  readonly rate: number;
}

interface Schedule {
  readonly ttlSeconds: number;
  /** Used in turn, round and round; the first is the grant's. */
  readonly fates: readonly Fate[];
  readonly outages: readonly Outage[];
  readonly drift: readonly Drift[];
}

const RHO = 0.01;
/** Float rounding in the drifting clock is far below a microsecond; a real violation is milliseconds. */
const SLACK_MS = 1e-3;

/**
 * Real time, and the client's local clock running at a rate that changes by
 * segments. Local timers are kept in local time; the simulation asks when in
 * real time the next one falls.
 */
class DriftClock implements KeeperClock {
  realMs = 0;
  #localMs = 50_000;
  rate = 1;
  readonly timers = new TimerQueue();

  now(): number {
    return this.#localMs;
  }

  setTimer(ms: number, fn: () => void): unknown {
    return this.timers.add(this.#localMs + Math.max(0, ms), fn);
  }

  clearTimer(handle: unknown): void {
    this.timers.remove(handle);
  }

  nextTimerRealMs(): number {
    const t = this.timers.peek();
    return t === undefined
      ? Number.POSITIVE_INFINITY
      : this.realMs + Math.max(0, t.at - this.#localMs) / this.rate;
  }

  advanceRealTo(realMs: number): void {
    this.#localMs += (realMs - this.realMs) * this.rate;
    this.realMs = realMs;
  }

  runNextTimer(): void {
    const t = this.timers.shift()!;
    this.realMs += Math.max(0, t.at - this.#localMs) / this.rate;
    this.#localMs = Math.max(this.#localMs, t.at);
    t.fn();
  }
}

/** What the runs saw, summed: proof that the interesting paths were taken. */
interface Coverage {
  runs: number;
  jeopardy: number;
  recovered: number;
  gone: number;
  graceEnded: number;
  outages: number;
}

const coverage = (): Coverage => ({ runs: 0, jeopardy: 0, recovered: 0, gone: 0, graceEnded: 0, outages: 0 });

/**
 * Runs one schedule for `endMs` of real time; throws on the first safety
 * violation; returns the transitions the keeper went through.
 */
async function simulate(
  s: Schedule,
  options: { endMs: number; keeperRho?: number; cov?: Coverage },
): Promise<LeaseTransition[]> {
  const ttlMs = s.ttlSeconds * 1000;
  const clock = new DriftClock();
  const events = new TimerQueue(); // real-time events
  const server = { leader: true, revoked: false, expiryMs: 0 };
  const transitions: LeaseTransition[] = [];
  let fateIndex = 0;
  const nextFate = (): Fate => s.fates[fateIndex++ % s.fates.length]!;
  let keeper: LeaseKeeper | undefined;
  const finals: LeaseState[] = ["expired", "released", "closed"];

  /** The leader expires the lease once its time is up; with no leader nothing expires. */
  const serverObserve = (now: number): void => {
    if (server.leader && !server.revoked && now >= server.expiryMs) server.revoked = true;
  };
  const setExpiry = (ms: number): void => {
    server.expiryMs = ms;
    events.add(ms + SLACK_MS, () => {}); // a probe: look at the keeper right after the server's deadline
  };

  const check = (): void => {
    if (keeper === undefined) return;
    const now = clock.realMs;
    const state = keeper.state;
    if (state === "valid") {
      if (server.revoked || now - server.expiryMs >= SLACK_MS)
        throw new Error(
          `two believers: the keeper says valid at real ${now} (local ${clock.now()}, ${keeper.describe()}) ` +
            `but the server's lease ${server.revoked ? "was revoked" : `expired at ${server.expiryMs}`}`,
        );
      if (!(keeper.validUntil() > clock.now())) throw new Error("valid with validUntil() in the past");
    }
    if (keeper.signal.aborted !== (state !== "valid"))
      throw new Error(`signal.aborted is ${keeper.signal.aborted} in state ${state}`);
    const last = transitions.at(-1);
    if (last !== undefined && finals.includes(last.to) && state !== last.to)
      throw new Error(`left the final state ${last.to} for ${state}`);
  };

  // The grant: sent at real 0, applied after its request delay, answered after its answer delay.
  const grant = nextFate();
  const grantedAt = clock.now();
  events.add(grant.reqDelayMs, () => setExpiry(clock.realMs + ttlMs));
  const answerAt = grant.reqDelayMs + grant.ansDelayMs;
  events.add(answerAt, () => {
    keeper = new LeaseKeeper({
      clock,
      ttlSeconds: s.ttlSeconds,
      grantedAt,
      rho: options.keeperRho ?? RHO,
      renew: (signal) =>
        new Promise<RenewAnswer>((resolve, reject) => {
          signal.addEventListener("abort", () => reject(signal.reason), { once: true });
          const fate = nextFate();
          if (fate.reqLost) return;
          events.add(clock.realMs + fate.reqDelayMs, () => {
            const now = clock.realMs;
            serverObserve(now);
            let answer: RenewAnswer | Error;
            if (!server.leader) answer = new Error("etcdserver: no leader");
            else if (server.revoked) answer = { kind: "gone" };
            else {
              setExpiry(now + ttlMs);
              answer = { kind: "renewed", ttlSeconds: s.ttlSeconds };
            }
            if (fate.ansLost) return;
            events.add(now + fate.ansDelayMs, () => {
              if (answer instanceof Error) reject(answer);
              else resolve(answer);
            });
          });
        }),
    });
    for (const st of ["valid", "jeopardy", "expired", "released", "closed"] as const) {
      keeper.on(st, (_r, t) => transitions.push(t));
    }
  });

  // Leader changes, after the grant.
  let at = answerAt;
  for (const o of s.outages) {
    at += o.afterMs;
    events.add(at, () => {
      serverObserve(clock.realMs);
      server.leader = false;
    });
    at += o.durationMs;
    events.add(at, () => {
      server.leader = true;
      if (!server.revoked) setExpiry(Math.max(server.expiryMs, clock.realMs + ttlMs));
    });
  }
  // Clock drift.
  let driftAt = 0;
  clock.rate = s.drift[0]?.rate ?? 1;
  for (let i = 1; i < s.drift.length; i++) {
    driftAt += s.drift[i - 1]!.durationMs;
    const rate = s.drift[i]!.rate;
    events.add(driftAt, () => {
      clock.rate = rate;
    });
  }

  for (let steps = 0; ; steps++) {
    if (steps > 200_000) throw new Error("the simulation does not progress");
    const timerReal = clock.nextTimerRealMs();
    const event = events.peek();
    const eventReal = event?.at ?? Number.POSITIVE_INFINITY;
    const next = Math.min(timerReal, eventReal);
    if (next > options.endMs) break;
    if (timerReal <= eventReal) clock.runNextTimer();
    else {
      events.shift();
      clock.advanceRealTo(Math.max(clock.realMs, eventReal));
      event!.fn();
    }
    await settle();
    check();
    if (keeper !== undefined && finals.includes(keeper.state)) break;
  }
  keeper?.close();
  if (options.cov !== undefined) {
    const c = options.cov;
    c.runs++;
    if (transitions.some((t) => t.to === "jeopardy")) c.jeopardy++;
    if (transitions.some((t) => t.from === "jeopardy" && t.to === "valid")) c.recovered++;
    if (transitions.some((t) => t.reason === "gone")) c.gone++;
    if (transitions.some((t) => t.reason === "graceEnded")) c.graceEnded++;
    if (s.outages.length > 0) c.outages++;
  }
  return transitions;
}

/** Delays that are often 0 or tiny (where drift matters most) and sometimes long. */
const delayArb = (ttlMs: number) =>
  fc.oneof(
    { weight: 2, arbitrary: fc.constant(0) },
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 30 }) },
    { weight: 3, arbitrary: fc.integer({ min: 0, max: Math.floor(ttlMs / 8) }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 * ttlMs }) },
  );

const rateArb = fc.oneof(
  fc.constant(1 - RHO),
  fc.constant(1 + RHO),
  fc.constant(1),
  fc.integer({ min: -100, max: 100 }).map((k) => 1 + (k / 100) * RHO),
);

/** Lost requests and answers, at a rate chosen per run (from none to most). */
const faultySchedule: fc.Arbitrary<Schedule> = fc
  .tuple(fc.constantFrom(1, 2, 3, 5), fc.constantFrom(0, 5, 15, 40))
  .chain(([ttlSeconds, lossPercent]) => {
    const ttlMs = ttlSeconds * 1000;
    const lost = fc.integer({ min: 0, max: 99 }).map((n) => n < lossPercent);
    return fc.record({
      ttlSeconds: fc.constant(ttlSeconds),
      fates: fc.array(
        fc.record({
          reqDelayMs: delayArb(ttlMs),
          ansDelayMs: delayArb(ttlMs),
          reqLost: lost,
          ansLost: lost,
        }),
        { minLength: 1, maxLength: 40 },
      ),
      outages: fc.array(
        fc.record({
          afterMs: fc.integer({ min: 0, max: 4 * ttlMs }),
          durationMs: fc.integer({ min: 1, max: 2 * ttlMs }),
        }),
        { maxLength: 3 },
      ),
      drift: fc.array(fc.record({ durationMs: fc.integer({ min: 1, max: 3 * ttlMs }), rate: rateArb }), {
        minLength: 1,
        maxLength: 6,
      }),
    });
  });

const reliableSchedule: fc.Arbitrary<Schedule> = fc.constantFrom(1, 2, 3, 5).chain((ttlSeconds) => {
  const ttlMs = ttlSeconds * 1000;
  const delay = fc.integer({ min: 0, max: Math.floor(ttlMs / 10) });
  return fc.record({
    ttlSeconds: fc.constant(ttlSeconds),
    fates: fc.array(
      fc.record({
        reqDelayMs: delay,
        ansDelayMs: delay,
        reqLost: fc.constant(false),
        ansLost: fc.constant(false),
      }),
      {
        minLength: 1,
        maxLength: 40,
      },
    ),
    outages: fc.constant([]),
    drift: fc.array(fc.record({ durationMs: fc.integer({ min: 1, max: 3 * ttlMs }), rate: rateArb }), {
      minLength: 1,
      maxLength: 6,
    }),
  });
});

const endOf = (s: Schedule): number => 12 * s.ttlSeconds * 1000;

describe("LeaseKeeper against a model server (fast-check)", () => {
  it("safety: whenever the keeper says valid, the server still holds the lease", async () => {
    const cov = coverage();
    await fc.assert(
      fc.asyncProperty(faultySchedule, async (s) => {
        await simulate(s, { endMs: endOf(s), cov });
      }),
      { numRuns: 250 },
    );
    // The faults did reach every path (FoundationDB-style coverage probes).
    expect(cov.jeopardy).toBeGreaterThan(cov.runs / 10);
    expect(cov.recovered).toBeGreaterThan(0);
    expect(cov.gone).toBeGreaterThan(0);
    expect(cov.graceEnded).toBeGreaterThan(0);
    expect(cov.outages).toBeGreaterThan(0);
  });

  it("liveness: on a reliable network the keeper never leaves valid", async () => {
    await fc.assert(
      fc.asyncProperty(reliableSchedule, async (s) => {
        const transitions = await simulate(s, { endMs: endOf(s) });
        expect(transitions.filter((t) => t.reason !== "closed")).toEqual([]);
      }),
      { numRuns: 60 },
    );
  });

  it("the safety property catches a keeper that ignores clock drift (rho 0)", async () => {
    const out = await fc.check(
      fc.asyncProperty(faultySchedule, async (s) => {
        await simulate(s, { endMs: endOf(s), keeperRho: 0 });
      }),
      { numRuns: 1000, seed: 7 },
    );
    expect(out.failed).toBe(true);
    expect(String(out.errorInstance)).toMatch(/two believers/);
  });
});
