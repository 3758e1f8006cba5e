/**
 * Property test of src/storage against the in-memory model (support.ts): random
 * sequences of Readies (appends that may overwrite an uncommitted suffix, hard
 * states, snapshots from a leader), compactions and restarts, with small
 * segments so rollover and segment deletion happen often. After every restart
 * the storage gives back exactly what the model holds.
 *
 * Contract: the generated sequences respect what the Raft core guarantees
 * (never overwrite a committed entry, compact only committed entries, commit
 * only stored entries); breaking those is a bug the storage asserts on.
 */

import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { OpenedStorage } from "../../src/storage/index.ts";
import { openStorage } from "../../src/storage/index.ts";
import { entry, hard, Model, removeDir, snap, tempDir } from "./support.ts";

type Command =
  | { readonly kind: "append"; readonly at: number; readonly n: number; readonly size: number }
  | { readonly kind: "hard"; readonly advance: number; readonly withEntry: boolean }
  | { readonly kind: "compact"; readonly at: number }
  | { readonly kind: "leaderSnapshot"; readonly ahead: number; readonly following: number }
  | { readonly kind: "restart" };

const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("append" as const),
      at: fc.nat(),
      n: fc.integer({ min: 1, max: 5 }),
      size: fc.integer({ min: 0, max: 60 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant("hard" as const), advance: fc.nat(6), withEntry: fc.boolean() }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("compact" as const), at: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("leaderSnapshot" as const),
      ahead: fc.nat(5),
      following: fc.nat(3),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) },
);

let root: string;
beforeEach(() => {
  root = tempDir();
});
afterEach(() => {
  removeDir(root);
});

describe("storage: random Readies, compactions and restarts against a model", () => {
  it("recovers exactly what the model holds", () => {
    let run = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(160, 400, 4096),
        fc.array(command, { minLength: 1, maxLength: 40 }),
        (segmentBytesMax, commands) => {
          const dir = `${root}/run-${run++}`;
          const options = { segmentBytesMax };
          const model = new Model();
          let o: OpenedStorage = openStorage(dir, options);
          let t = 1;
          for (const c of commands) {
            const last = model.lastIndex();
            const floor = Math.max(model.hardState.commit, model.snapshot.meta.index);
            switch (c.kind) {
              case "append": {
                // Overwrite only above the commit index (Leader Completeness), with a newer term.
                const first = floor + 1 + (c.at % (last - floor + 1));
                if (first <= last) t++;
                const es = Array.from({ length: c.n }, (_, i) => entry(first + i, t, c.size));
                o.storage.save(undefined, es, undefined);
                model.save(undefined, es, undefined);
                break;
              }
              case "hard": {
                const es = c.withEntry ? [entry(last + 1, t)] : [];
                const commit = Math.min(model.hardState.commit + c.advance, last + es.length);
                const hs = hard(t, 1 + (t % 3), Math.max(commit, model.hardState.commit));
                o.storage.save(hs, es, undefined);
                model.save(hs, es, undefined);
                break;
              }
              case "compact": {
                const committed = Math.min(model.hardState.commit, last);
                const from = model.snapshot.meta.index + 1;
                if (committed < from) break;
                const index = from + (c.at % (committed - from + 1));
                const s = snap(index, model.termAt(index));
                o.storage.saveSnapshot(s);
                model.compact(s);
                break;
              }
              case "leaderSnapshot": {
                t++;
                const index = Math.max(last, model.hardState.commit) + 1 + c.ahead;
                const s = snap(index, t);
                const es = Array.from({ length: c.following }, (_, i) => entry(index + 1 + i, t));
                const hs = hard(t, 0, index);
                o.storage.save(hs, es, s);
                model.save(hs, es, s);
                break;
              }
              case "restart":
                o.storage.close();
                o = openStorage(dir, options);
                expect(o.initial).toEqual(model.initial());
                break;
            }
          }
          o.storage.close();
          o = openStorage(dir, options);
          expect(o.initial).toEqual(model.initial());
          o.storage.close();
          removeDir(dir);
        },
      ),
      { numRuns: 150 },
    );
  });
});
