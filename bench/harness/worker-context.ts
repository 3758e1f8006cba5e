/**
 * What a workload's client-side function gets inside a client process: its
 * job, a client on every endpoint, the current phase, and a meter that counts
 * only inside the measured window.
 *
 * Contract:
 * - The function sets up, then awaits `ready()` (resolves when the load is to
 *   start, phase `warm`), drives load until `stopped` is true (or the
 *   `whenStopped` promise resolves), cleans up and returns; the context then
 *   sends the result.
 * - `meter.ok(latencyUs)`, `meter.count(n)`, `meter.sample(latencyUs)` and
 *   `meter.fail(err)` record only during phase `measure`; the per-second
 *   curve is counted from the moment `measure` arrived. The first error's
 *   message is kept whenever it happens (setup errors explain a failed run).
 * - `closedLoop` runs `concurrency` loops each issuing one operation at a
 *   time until stopped; a failed operation counts as an error and its loop
 *   pauses 1 ms (no spinning against a dead server).
 */

import { BenchClient } from "./client.ts";
import { Histogram } from "./histogram.ts";
import type { Job, Phase, WorkerResult } from "./protocol.ts";

export class Meter {
  private measuring = false;
  private ops = 0;
  private errors = 0;
  private firstError: string | undefined;
  private readonly latency = new Histogram();
  private readonly perSecond: number[] = [];
  private t0 = 0;
  private t1 = 0;
  private cpu0: NodeJS.CpuUsage = { user: 0, system: 0 };
  private cpu1: NodeJS.CpuUsage = { user: 0, system: 0 };
  readonly extra: Record<string, number> = {};

  begin(): void {
    this.measuring = true;
    this.t0 = performance.now();
    this.cpu0 = process.cpuUsage();
  }

  end(): void {
    if (!this.measuring) return;
    this.measuring = false;
    this.t1 = performance.now();
    this.cpu1 = process.cpuUsage();
  }

  get active(): boolean {
    return this.measuring;
  }

  get completed(): number {
    return this.ops;
  }

  /** One operation done, which took `latencyUs`. */
  ok(latencyUs: number): void {
    if (!this.measuring) return;
    this.latency.record(latencyUs);
    this.count(1);
  }

  /** `n` operations done (no latency). */
  count(n: number): void {
    if (!this.measuring) return;
    this.ops += n;
    const s = Math.floor((performance.now() - this.t0) / 1000);
    while (this.perSecond.length <= s) this.perSecond.push(0);
    this.perSecond[s]! += n;
  }

  /** A latency sample that is not itself an operation. */
  sample(latencyUs: number): void {
    if (this.measuring) this.latency.record(latencyUs);
  }

  fail(err: unknown): void {
    if (this.firstError === undefined) this.firstError = err instanceof Error ? err.message : String(err);
    if (this.measuring) this.errors++;
  }

  /** Adds to a workload counter (counted in every phase). */
  add(name: string, n = 1): void {
    this.extra[name] = (this.extra[name] ?? 0) + n;
  }

  result(): WorkerResult {
    return {
      ops: this.ops,
      errors: this.errors,
      firstError: this.firstError,
      latency: this.latency.toJSON(),
      perSecond: this.perSecond,
      cpuUs: this.cpu1.user + this.cpu1.system - this.cpu0.user - this.cpu0.system,
      wallUs: (this.t1 - this.t0) * 1000,
      extra: this.extra,
    };
  }
}

export class WorkerContext {
  readonly meter = new Meter();
  readonly client: BenchClient;
  private current: Phase = "setup";
  private readonly waiters = new Map<Phase, (() => void)[]>();

  constructor(readonly job: Job) {
    this.client = new BenchClient(job.endpoints, 30_000);
  }

  get phase(): Phase {
    return this.current;
  }

  get stopped(): boolean {
    return this.current === "stop";
  }

  /** Called by the worker entry when the coordinator moves on. */
  enter(phase: Phase): void {
    this.current = phase;
    if (phase === "measure") this.meter.begin();
    if (phase === "stop") this.meter.end();
    for (const w of this.waiters.get(phase) ?? []) w();
    this.waiters.delete(phase);
  }

  private when(phase: Phase): Promise<void> {
    const order: Phase[] = ["setup", "warm", "measure", "stop"];
    if (order.indexOf(this.current) >= order.indexOf(phase)) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.waiters.get(phase) ?? [];
      list.push(resolve);
      this.waiters.set(phase, list);
    });
  }

  /** Set by the worker entry: tells the coordinator this worker is set up. */
  onReady: () => void = () => {};

  /** Setup done: resolves when the load is to start. */
  ready(): Promise<void> {
    this.onReady();
    return this.when("warm");
  }

  whenStopped(): Promise<void> {
    return this.when("stop");
  }

  /** A numeric parameter of the job (throws when missing: a coordinator bug). */
  num(name: string): number {
    const v = this.job.params[name];
    if (typeof v !== "number") throw new Error(`worker: parameter ${name} missing`);
    return v;
  }

  str(name: string): string {
    const v = this.job.params[name];
    if (typeof v !== "string") throw new Error(`worker: parameter ${name} missing`);
    return v;
  }

  /** Elements of `0..n-1` that are this worker's share (i % count === index). */
  share(n: number): number[] {
    const out: number[] = [];
    for (let i = this.job.index; i < n; i += this.job.count) out.push(i);
    return out;
  }

  /** `concurrency` loops of `op` until stopped, each operation timed. */
  async closedLoop(concurrency: number, op: (slot: number) => Promise<unknown>): Promise<void> {
    await Promise.all(
      Array.from({ length: concurrency }, async (_, slot) => {
        while (!this.stopped) {
          const t0 = performance.now();
          try {
            await op(slot);
            this.meter.ok((performance.now() - t0) * 1000);
          } catch (e) {
            this.meter.fail(e);
            await new Promise((r) => setTimeout(r, 1));
          }
        }
      }),
    );
  }
}

/** Runs `op(i)` for i in `items` with at most `concurrency` at once; retries each failure up to 3 times. */
export async function bulk<T>(
  items: readonly T[],
  concurrency: number,
  op: (item: T, k: number) => Promise<void>,
  onDone?: (done: number) => void,
): Promise<void> {
  let next = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const k = next++;
        for (let attempt = 1; ; attempt++) {
          try {
            await op(items[k]!, k);
            break;
          } catch (e) {
            if (attempt >= 3) throw e;
            await new Promise((r) => setTimeout(r, 50 * attempt));
          }
        }
        done++;
        onDone?.(done);
      }
    }),
  );
}
