/**
 * Entry point of a client process (forked by pool.ts; see protocol.ts): runs
 * the worker function of the workload named in its job, relays phases into
 * its WorkerContext, sends ticks, then its result, and exits. It exits at
 * once when the coordinator goes away (IPC disconnect), so a killed
 * coordinator leaves no load generator behind.
 */

import { WORKLOADS } from "../workloads/index.ts";
import type { FromWorker, Job, ToWorker } from "./protocol.ts";
import { WorkerContext } from "./worker-context.ts";

function send(m: FromWorker, then?: () => void): void {
  if (process.send === undefined || !process.connected) {
    then?.();
    return;
  }
  process.send(m, undefined, {}, () => then?.());
}

let ctx: WorkerContext | undefined;

async function start(job: Job): Promise<void> {
  const fn = WORKLOADS.find((w) => w.name === job.workload)?.worker;
  if (fn === undefined) throw new Error(`worker: workload ${job.workload} has no client-process side`);
  const c = new WorkerContext(job);
  ctx = c;
  c.onReady = () => send({ t: "ready" });
  const ticker = setInterval(() => {
    if (c.meter.active) send({ t: "tick", ops: c.meter.completed });
  }, 500);
  try {
    await fn(c);
    c.meter.end();
    send({ t: "result", result: c.meter.result() }, () => process.exit(0));
  } finally {
    clearInterval(ticker);
    c.client.close();
  }
}

process.on("message", (m: ToWorker) => {
  if (m.t === "job") {
    start(m.job).catch((e: unknown) => {
      send({ t: "error", message: e instanceof Error ? (e.stack ?? e.message) : String(e) }, () =>
        process.exit(1),
      );
    });
  } else ctx?.enter(m.phase);
});
process.on("disconnect", () => process.exit(0));
