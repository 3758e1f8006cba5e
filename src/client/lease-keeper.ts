/**
 * The client side of one lease: the Chubby client state machine (Burrows,
 * "The Chubby lock service", §2.8; ARCHITECTURE "Leases" rule 5) and the
 * renewal schedule, on an injected monotonic clock. No network: the caller
 * gives `renew`, one renewal attempt, and the keeper decides when to call it
 * and what its answers mean.
 *
 * States:
 *   valid ──(local deadline passes)──▶ jeopardy ──(grace ends)──▶ expired
 *     ▲                                   │
 *     └──(a renewal answered in time)─────┘
 *   "gone" (the server no longer has the lease) → expired, from either.
 *   release() → released, close() → closed, from either.
 * expired, released and closed are final: every timer is stopped and an
 * attempt in flight is aborted.
 *
 * The local deadline is `sentMs + ttl·1000·(1 − rho)`, where `sentMs` is the
 * time the newest answered request (the grant, or a renewal) was SENT and
 * `ttl` the TTL it answered; never the time the answer arrived, and never the
 * server's clock. The server starts a TTL no earlier than it receives the
 * request, i.e. after `sentMs`, and a leader change only extends it (rule 4),
 * so if this client's clock runs at most `rho` slower than the server's, the
 * server still holds the lease whenever this keeper says "valid".
 *
 * Safety invariant: the keeper never reports "valid" at a local time t unless
 * t < sentMs + ttl·1000·(1 − rho) for that newest answered request. Every
 * read (`state`, `validUntil()`, `signal`) checks the clock first, so a late
 * timer (a blocked event loop) can delay the jeopardy event, never the truth.
 *
 * Jeopardy: the client must stop acting as the holder, and the keeper keeps
 * trying to renew for `graceMs` after the deadline (default: one more TTL);
 * a renewal sent at s and answered "renewed" with s + ttl'·(1 − rho) > now
 * makes it valid again, with a fresh `signal`.
 *
 * Renewal schedule: one attempt in flight at a time, bounded by
 * `attemptTimeoutMs` (default TTL/3; its signal is then aborted and its late
 * answer ignored). The first at grantedAt + TTL/3, the next TTL/3 after the
 * send time of each answered one. A thrown error or a timeout is an unknown
 * outcome (network, no leader): retry after a backoff that starts at 100 ms
 * and doubles up to TTL/6, with one last attempt 100 ms before the deadline
 * (or the end of the grace period) when the backoff would skip past it.
 *
 * Effects reach user code (signal aborts, event listeners) only after the
 * keeper's own state is consistent, so a listener may call back into it.
 */

import { assert } from "../raft/index.ts";
import { CancelledError, DeadlineExceededError, LeaseLostError } from "./errors.ts";

/** Monotonic time and timers, injected (CONVENTIONS 3). */
export interface KeeperClock {
  /** Monotonic milliseconds (an arbitrary origin, never wall time). */
  now(): number;
  /** Runs `fn` once, `ms` from now; returns a handle for clearTimer. */
  setTimer(ms: number, fn: () => void): unknown;
  /** Cancels a timer that has not run (a no-op for one that has). */
  clearTimer(handle: unknown): void;
}

/** The longest delay a Node timer takes (a longer one fires at once); the keeper re-arms. */
const NODE_TIMER_MAX_MS = 2_147_483_647;

/**
 * The process's monotonic clock (performance.now) and Node timers. The timers
 * are unref'd: keeping a lease does not by itself keep the process alive.
 */
export const systemClock: KeeperClock = {
  now: () => performance.now(),
  setTimer: (ms, fn) => setTimeout(fn, Math.min(Math.max(0, ms), NODE_TIMER_MAX_MS)).unref(),
  clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * A renewal's answer: "renewed" with the TTL the server granted again (a TTL
 * of 0 or less is taken as "gone", as etcd's keepalive answers for a lease it
 * does not have), or "gone": the server says the lease does not exist. A
 * thrown error (or rejected promise) is an unknown outcome.
 */
export type RenewAnswer =
  | { readonly kind: "renewed"; readonly ttlSeconds: number }
  | { readonly kind: "gone" };

/** The states of a lease as this client knows it (see the header). */
export type LeaseState = "valid" | "jeopardy" | "expired" | "released" | "closed";

/**
 * Why a transition happened: `renewed` (→ valid), `deadline` (→ jeopardy),
 * `graceEnded` and `gone` (→ expired), `released`, `closed`.
 */
export type LeaseTransitionReason = "renewed" | "deadline" | "graceEnded" | "gone" | "released" | "closed";

/** One transition, as listeners see it; `atMs` is the local monotonic time it was applied. */
export interface LeaseTransition {
  readonly from: LeaseState;
  readonly to: LeaseState;
  readonly reason: LeaseTransitionReason;
  readonly atMs: number;
}

/** A transition listener: the reason first, then the whole transition. */
export type LeaseListener = (reason: LeaseTransitionReason, transition: LeaseTransition) => void;

/** What a LeaseKeeper starts from. */
export interface LeaseKeeperOptions {
  /** Default `systemClock`; `grantedAt` must be on the same clock. */
  readonly clock?: KeeperClock;
  /** The TTL the grant answered, in seconds (> 0). */
  readonly ttlSeconds: number;
  /** `clock.now()` when the Acquire/Grant that was answered was SENT. */
  readonly grantedAt: number;
  /** The bound on clock drift, in [0, 1); default 0.01 (1%). */
  readonly rho?: number;
  /** How long jeopardy lasts before expired, in ms; default the current TTL (one more TTL of trying). */
  readonly graceMs?: number;
  /** The bound on one renewal attempt, in ms; default a third of the current TTL. */
  readonly attemptTimeoutMs?: number;
  /** One renewal attempt; abandon it when `signal` aborts. */
  readonly renew: (signal: AbortSignal) => Promise<RenewAnswer>;
}

/** The first retry delay after an unknown outcome, and the lead of the last attempt before a deadline. */
export const RENEW_BACKOFF_MIN_MS = 100;
/** The retry delay stops doubling at TTL / this. */
const RENEW_BACKOFF_CAP_DIVISOR = 6;
/** Renewals are due every TTL / this. */
const RENEW_INTERVAL_DIVISOR = 3;
/** Consecutive failures beyond this do not grow the backoff further (it is capped long before). */
const FAILURES_MAX = 32;

/** One renewal attempt in flight. */
interface Attempt {
  readonly sentMs: number;
  readonly controller: AbortController;
  readonly timeoutTimer: unknown;
  readonly done: Promise<void>;
  readonly resolveDone: () => void;
}

type Outcome = RenewAnswer | { readonly kind: "unknown" };

/**
 * Keeps one lease: renews it in the background and says, on the local
 * monotonic clock, whether its holder may act (see the header for the
 * states, the schedule and the safety invariant).
 */
export class LeaseKeeper {
  readonly #clock: KeeperClock;
  readonly #renew: (signal: AbortSignal) => Promise<RenewAnswer>;
  readonly #rho: number;
  readonly #graceOptionMs: number | undefined;
  readonly #attemptTimeoutOptionMs: number | undefined;

  #state: LeaseState = "valid";
  /** Invariant: the send time of the newest answered request; never decreases. */
  #sentMs: number;
  /** The TTL (ms) that request answered. */
  #ttlMs: number;
  /** Aborts when the current valid period ends; a new one per valid period. */
  #controller = new AbortController();
  /** Invariant: at most one attempt in flight. */
  #attempt: Attempt | undefined;
  #renewTimer: unknown;
  /** Fires at the deadline (valid) or the end of the grace period (jeopardy). */
  #stateTimer: unknown;
  #failures = 0;
  readonly #listeners = new Map<LeaseState, Set<LeaseListener>>();
  /** Aborts and events not yet delivered; run by #flush once state is consistent. */
  readonly #effects: (() => void)[] = [];
  #flushing = false;

  constructor(options: LeaseKeeperOptions) {
    const clock = options.clock ?? systemClock;
    const rho = options.rho ?? 0.01;
    checkPositive("ttlSeconds", options.ttlSeconds);
    if (!(rho >= 0 && rho < 1)) throw new RangeError(`LeaseKeeper: rho must be in [0, 1), got ${rho}`);
    if (options.graceMs !== undefined) checkNonNegative("graceMs", options.graceMs);
    if (options.attemptTimeoutMs !== undefined) checkPositive("attemptTimeoutMs", options.attemptTimeoutMs);
    if (!Number.isFinite(options.grantedAt) || options.grantedAt > clock.now())
      throw new RangeError(`LeaseKeeper: grantedAt must be a time already passed on the clock`);
    this.#clock = clock;
    this.#renew = options.renew;
    this.#rho = rho;
    this.#graceOptionMs = options.graceMs;
    this.#attemptTimeoutOptionMs = options.attemptTimeoutMs;
    this.#sentMs = options.grantedAt;
    this.#ttlMs = options.ttlSeconds * 1000;
    this.#run(() => {
      this.#observeTime();
      if (this.#isFinal()) return;
      if (this.#state === "valid") this.#scheduleRenew(this.#sentMs + this.#ttlMs / RENEW_INTERVAL_DIVISOR);
      else this.#scheduleRenew(this.#clock.now());
      this.#armStateTimer();
    });
  }

  /** The state now (reading it applies any transition whose time has come). */
  get state(): LeaseState {
    this.#run(() => this.#observeTime());
    return this.#state;
  }

  /**
   * Until when (local monotonic ms, exclusive) the holder may act: the local
   * deadline while valid, -Infinity otherwise, so `clock.now() < validUntil()`
   * is always a correct test.
   */
  validUntil(): number {
    this.#run(() => this.#observeTime());
    return this.#state === "valid" ? this.#deadlineMs() : Number.NEGATIVE_INFINITY;
  }

  /**
   * Aborts (with a LeaseLostError) when the lease MAY be lost: on leaving
   * "valid" for any reason. Each valid period has its own signal, so after a
   * return from jeopardy read it again; outside "valid" it is already aborted.
   */
  get signal(): AbortSignal {
    this.#run(() => this.#observeTime());
    return this.#controller.signal;
  }

  /** The TTL (seconds) of the newest answered request. */
  get ttlSeconds(): number {
    return this.#ttlMs / 1000;
  }

  /**
   * Calls `fn(reason, transition)` each time the keeper enters `state` (the
   * initial "valid" is not an event); returns the function that removes it. A listener that throws does not
   * stop the keeper; its error is rethrown in a microtask (uncaught).
   */
  on(state: LeaseState, fn: LeaseListener): () => void {
    let set = this.#listeners.get(state);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(state, set);
    }
    set.add(fn);
    return () => {
      set.delete(fn);
    };
  }

  /**
   * Starts a renewal now unless one is in flight or the keeper is final;
   * resolves when that attempt (or the one in flight) is settled.
   */
  renewNow(): Promise<void> {
    this.#run(() => this.#startAttempt());
    return this.#attempt?.done ?? Promise.resolve();
  }

  /**
   * Stops keeping the lease because its holder gives it up: "released", final.
   * Call it BEFORE sending Release, so work tied to `signal` stops first. A
   * no-op once final.
   */
  release(): void {
    this.#run(() => this.#finish("released", "released"));
  }

  /** Stops keeping the lease without giving it up (the client is closing): "closed", final. */
  close(): void {
    this.#run(() => this.#finish("closed", "closed"));
  }

  /** A deterministic one-line description (CONVENTIONS 12). */
  describe(): string {
    const ttl = `ttl ${this.#ttlMs / 1000}s, sent at ${this.#sentMs}, rho ${this.#rho}`;
    const state = this.state;
    if (state === "valid") return `valid until ${this.#deadlineMs()} (${ttl})`;
    if (state === "jeopardy") return `jeopardy until ${this.#graceEndMs()} (${ttl})`;
    return `${state} (${ttl})`;
  }

  // ------------------------------------------------------------ time

  #deadlineMs(): number {
    return this.#sentMs + this.#ttlMs * (1 - this.#rho);
  }

  #graceEndMs(): number {
    return this.#deadlineMs() + (this.#graceOptionMs ?? this.#ttlMs);
  }

  #isFinal(): boolean {
    return this.#state === "expired" || this.#state === "released" || this.#state === "closed";
  }

  /** Applies the transitions whose time has come: valid → jeopardy → expired. */
  #observeTime(): void {
    if (this.#isFinal()) return;
    const now = this.#clock.now();
    if (this.#state === "valid" && now >= this.#deadlineMs()) this.#enter("jeopardy", "deadline");
    if (this.#state === "jeopardy" && now >= this.#graceEndMs()) this.#finish("expired", "graceEnded");
  }

  /** One timer for the next time-driven transition; re-armed if it ran early. */
  #armStateTimer(): void {
    this.#clearTimer("state");
    if (this.#isFinal()) return;
    const at = this.#state === "valid" ? this.#deadlineMs() : this.#graceEndMs();
    this.#stateTimer = this.#clock.setTimer(Math.max(0, at - this.#clock.now()), () => {
      this.#stateTimer = undefined;
      this.#run(() => {
        this.#observeTime();
        this.#armStateTimer();
      });
    });
  }

  // ------------------------------------------------------------ renewals

  #scheduleRenew(atMs: number): void {
    this.#clearTimer("renew");
    this.#renewTimer = this.#clock.setTimer(Math.max(0, atMs - this.#clock.now()), () => {
      this.#renewTimer = undefined;
      this.#run(() => this.#startAttempt());
    });
  }

  #startAttempt(): void {
    this.#observeTime();
    if (this.#isFinal() || this.#attempt !== undefined) return;
    this.#clearTimer("renew");
    const controller = new AbortController();
    const timeoutMs = this.#attemptTimeoutOptionMs ?? this.#ttlMs / RENEW_INTERVAL_DIVISOR;
    let resolveDone = (): void => {};
    const done = new Promise<void>((resolve) => {
      resolveDone = resolve;
    });
    const attempt: Attempt = {
      sentMs: this.#clock.now(),
      controller,
      done,
      resolveDone,
      timeoutTimer: this.#clock.setTimer(timeoutMs, () =>
        this.#run(() => {
          if (this.#attempt !== attempt) return;
          this.#effects.push(() =>
            controller.abort(new DeadlineExceededError("leasehold: the renewal attempt timed out")),
          );
          this.#settle(attempt, { kind: "unknown" });
        }),
      ),
    };
    this.#attempt = attempt;
    let answer: Promise<RenewAnswer>;
    try {
      answer = Promise.resolve(this.#renew(controller.signal));
    } catch (err) {
      answer = Promise.reject(err);
    }
    answer.then(
      (a) => this.#run(() => this.#settle(attempt, a)),
      () => this.#run(() => this.#settle(attempt, { kind: "unknown" })),
    );
  }

  /** An attempt's outcome; ignored unless it is the attempt in flight (not timed out, not stopped). */
  #settle(attempt: Attempt, outcome: Outcome): void {
    if (this.#attempt !== attempt) return;
    this.#attempt = undefined;
    this.#clock.clearTimer(attempt.timeoutTimer);
    this.#effects.push(attempt.resolveDone);
    this.#observeTime();
    if (this.#isFinal()) return;
    if (outcome.kind === "renewed" && !(outcome.ttlSeconds > 0 && Number.isFinite(outcome.ttlSeconds))) {
      outcome = { kind: "gone" };
    }
    switch (outcome.kind) {
      case "gone":
        this.#finish("expired", "gone");
        return;
      case "unknown":
        this.#retryLater();
        break;
      case "renewed":
        this.#renewed(attempt.sentMs, outcome.ttlSeconds * 1000);
        break;
    }
    this.#armStateTimer();
  }

  /** A renewal sent at `sentMs` was answered: the newest answer sets the deadline. */
  #renewed(sentMs: number, ttlMs: number): void {
    assert(sentMs >= this.#sentMs, "lease keeper: an answered renewal older than the newest answer");
    this.#sentMs = sentMs;
    this.#ttlMs = ttlMs;
    const now = this.#clock.now();
    if (now < this.#deadlineMs()) {
      this.#failures = 0;
      if (this.#state === "jeopardy") this.#enter("valid", "renewed");
      this.#scheduleRenew(sentMs + ttlMs / RENEW_INTERVAL_DIVISOR);
    } else {
      // Answered too late to vouch for now (or a TTL that shrank): as good as no answer.
      this.#observeTime();
      if (!this.#isFinal()) this.#retryLater();
    }
  }

  /** After an unknown outcome: capped exponential backoff, with a last try before the horizon. */
  #retryLater(): void {
    this.#failures = Math.min(this.#failures + 1, FAILURES_MAX);
    const capMs = Math.max(RENEW_BACKOFF_MIN_MS, this.#ttlMs / RENEW_BACKOFF_CAP_DIVISOR);
    const baseMs = Math.min(RENEW_BACKOFF_MIN_MS, capMs);
    const delayMs = Math.min(capMs, baseMs * 2 ** (this.#failures - 1));
    const now = this.#clock.now();
    const horizon = this.#state === "valid" ? this.#deadlineMs() : this.#graceEndMs();
    const lastChance = horizon - baseMs;
    let at = now + delayMs;
    if (at >= horizon && lastChance > now) at = lastChance;
    this.#scheduleRenew(at);
  }

  // ------------------------------------------------------------ transitions

  /** valid ⇄ jeopardy. */
  #enter(to: "valid" | "jeopardy", reason: LeaseTransitionReason): void {
    const from = this.#state;
    assert(from !== to && !this.#isFinal(), `lease keeper: ${from} → ${to}`);
    this.#state = to;
    if (to === "valid") this.#controller = new AbortController();
    else this.#abortPeriod(to);
    this.#emit(from, to, reason);
  }

  /** To a final state: every timer stopped, the attempt in flight aborted. */
  #finish(to: "expired" | "released" | "closed", reason: LeaseTransitionReason): void {
    if (this.#isFinal()) return;
    const from = this.#state;
    this.#state = to;
    this.#clearTimer("renew");
    this.#clearTimer("state");
    const attempt = this.#attempt;
    if (attempt !== undefined) {
      this.#attempt = undefined;
      this.#clock.clearTimer(attempt.timeoutTimer);
      this.#effects.push(() =>
        attempt.controller.abort(new CancelledError("leasehold: the lease keeper stopped")),
      );
      this.#effects.push(attempt.resolveDone);
    }
    if (from === "valid") this.#abortPeriod(to);
    this.#emit(from, to, reason);
  }

  #abortPeriod(to: "jeopardy" | "expired" | "released" | "closed"): void {
    const controller = this.#controller;
    this.#effects.push(() => controller.abort(new LeaseLostError(to)));
  }

  #emit(from: LeaseState, to: LeaseState, reason: LeaseTransitionReason): void {
    const transition: LeaseTransition = { from, to, reason, atMs: this.#clock.now() };
    this.#effects.push(() => {
      for (const fn of [...(this.#listeners.get(to) ?? [])]) {
        try {
          fn(reason, transition);
        } catch (err) {
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    });
  }

  #clearTimer(which: "renew" | "state"): void {
    const handle = which === "renew" ? this.#renewTimer : this.#stateTimer;
    if (handle === undefined) return;
    this.#clock.clearTimer(handle);
    if (which === "renew") this.#renewTimer = undefined;
    else this.#stateTimer = undefined;
  }

  /** Every entry point: change state, then deliver the effects (which may re-enter). */
  #run(step: () => void): void {
    step();
    this.#flush();
  }

  #flush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      for (let effect = this.#effects.shift(); effect !== undefined; effect = this.#effects.shift()) effect();
    } finally {
      this.#flushing = false;
    }
  }
}

function checkPositive(name: string, v: number): void {
  if (!(Number.isFinite(v) && v > 0))
    throw new RangeError(`LeaseKeeper: ${name} must be a positive number, got ${v}`);
}

function checkNonNegative(name: string, v: number): void {
  if (!(Number.isFinite(v) && v >= 0))
    throw new RangeError(`LeaseKeeper: ${name} must be 0 or more, got ${v}`);
}
