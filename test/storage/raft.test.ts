/**
 * The Raft core on real storage: three members persist every Ready with
 * Storage.save (the Ready contract's step 1), exchange messages only as bytes
 * through the codec, compact and save snapshots, and crash and restart from
 * their data directories on a seeded schedule. Checks: every restart recovers
 * exactly what was persisted (an in-memory model of the same Readies), every
 * message decodes to what was sent, no two members apply different entries at
 * one index, and the cluster keeps committing across restarts.
 *
 * Contract: deterministic (one seed); a crash happens between Readies (a crash
 * inside a write is the torn-write tests' business).
 */

import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { MemberId, Message } from "../../src/raft/index.ts";
import {
  bootstrapState,
  decodeMessage,
  describeEntry,
  encodeMessage,
  logIndex,
  memberId,
  Raft,
} from "../../src/raft/index.ts";
import type { OpenedStorage } from "../../src/storage/index.ts";
import { openStorage } from "../../src/storage/index.ts";
import { Model, removeDir, tempDir } from "./support.ts";

/** A small deterministic generator (LCG); the run depends on the seed only. */
class Lcg {
  constructor(private state: number) {}
  int(n: number): number {
    this.state = (this.state * 1103515245 + 12345) % 2147483648;
    return Math.floor((this.state / 2147483648) * n);
  }
}

interface Member {
  readonly id: MemberId;
  readonly dir: string;
  readonly model: Model;
  opened: OpenedStorage | undefined;
  raft: Raft | undefined;
  inbox: Uint8Array[];
}

const STORAGE_OPTIONS = { segmentBytesMax: 4096 };

let root: string;
beforeEach(() => {
  root = tempDir();
});
afterEach(() => {
  removeDir(root);
});

describe("storage: Raft members on real storage, crashing and restarting", () => {
  it("recover what they persisted and agree on every applied entry", () => {
    const rng = new Lcg(20240601);
    const ids = [1, 2, 3].map(memberId);
    const members = new Map<MemberId, Member>();
    /** index -> the entry applied there by anyone (state machine safety). */
    const applied = new Map<number, string>();
    const counts = { restarts: 0, compactions: 0, snapMessages: 0, proposals: 0, messages: 0 };

    const start = (m: Member): void => {
      const opened = openStorage(m.dir, STORAGE_OPTIONS);
      expect(opened.initial).toEqual(m.model.initial());
      m.opened = opened;
      m.raft = new Raft(
        { id: m.id, rng: { int: (n) => rng.int(n) }, electionTicks: 10, heartbeatTicks: 1 },
        opened.initial,
      );
    };
    const crash = (m: Member): void => {
      m.opened!.storage.close();
      m.opened = undefined;
      m.raft = undefined;
      m.inbox = [];
    };

    for (const id of ids) {
      const m: Member = {
        id,
        dir: join(root, `m${id}`),
        model: new Model(),
        opened: undefined,
        raft: undefined,
        inbox: [],
      };
      // A founding member persists the bootstrap state before it first starts.
      const boot = bootstrapState(ids);
      const o = openStorage(m.dir, STORAGE_OPTIONS);
      o.storage.save(boot.hardState, boot.entries, undefined);
      m.model.save(boot.hardState, boot.entries, undefined);
      o.storage.close();
      members.set(id, m);
      start(m);
    }

    const processReady = (m: Member): void => {
      const raft = m.raft;
      if (raft === undefined || !raft.hasReady()) return;
      const rd = raft.ready();
      m.opened!.storage.save(rd.hardState, rd.entries, rd.snapshot);
      m.model.save(rd.hardState, rd.entries, rd.snapshot);
      for (const msg of rd.messages) {
        const bytes = encodeMessage(msg);
        expect(decodeMessage(bytes)).toEqual(msg);
        counts.messages++;
        if (msg.type === "snap") counts.snapMessages++;
        const to = members.get(msg.to);
        if (to?.raft !== undefined) to.inbox.push(bytes);
      }
      for (const e of rd.committedEntries) {
        const key = describeEntry(e);
        const seen = applied.get(e.index);
        if (seen !== undefined) expect(key).toBe(seen);
        else applied.set(e.index, key);
      }
      raft.advance(rd);
    };
    const deliver = (m: Member): void => {
      const msgs = m.inbox;
      m.inbox = [];
      for (const bytes of msgs) m.raft?.step(decodeMessage(bytes) as Message);
    };
    const compact = (m: Member): void => {
      const raft = m.raft;
      if (raft === undefined) return;
      const index = raft.log.applied;
      if (index - raft.log.snapshot.meta.index < 5) return;
      raft.compact(index, new TextEncoder().encode(`state@${index}`));
      m.opened!.storage.saveSnapshot(raft.log.snapshot);
      m.model.compact(raft.log.snapshot);
      counts.compactions++;
    };
    const all = [...members.values()];
    const pick = (): Member => all[rng.int(all.length)]!;

    for (let step = 0; step < 6000; step++) {
      const r = rng.int(100);
      if (r < 25) {
        for (const m of all) m.raft?.tick();
      } else if (r < 45) {
        const leader = all.find((m) => m.raft?.role === "leader");
        if (leader?.raft?.propose([new TextEncoder().encode(`p${step}`)]).ok) counts.proposals++;
      } else if (r < 72) {
        processReady(pick());
      } else if (r < 96) {
        deliver(pick());
      } else if (r < 98) {
        compact(pick());
      } else {
        const m = pick();
        const down = all.filter((x) => x.raft === undefined).length;
        if (m.raft === undefined) {
          start(m);
          counts.restarts++;
        } else if (down === 0) {
          crash(m);
        }
      }
    }

    // Heal: everyone up, then run until a leader commits a last proposal everywhere.
    for (const m of all) {
      if (m.raft === undefined) {
        start(m);
        counts.restarts++;
      }
    }
    let leader: Member | undefined;
    let index = 0;
    for (let round = 0; round < 2000; round++) {
      for (const m of all) m.raft!.tick();
      for (const m of all) processReady(m);
      for (const m of all) deliver(m);
      leader = all.find((m) => m.raft!.role === "leader");
      if (leader !== undefined && index === 0) {
        const res = leader.raft!.propose([new TextEncoder().encode("final")]);
        if (res.ok) index = res.index;
      }
      if (index > 0 && all.every((m) => m.raft!.log.applied >= index)) break;
    }
    expect(index).toBeGreaterThan(0);
    for (const m of all) expect(m.raft!.log.applied).toBeGreaterThanOrEqual(logIndex(index));

    // Every member restarts once more from disk and recovers exactly what it persisted.
    for (const m of all) {
      crash(m);
      start(m);
      crash(m);
    }
    expect(counts.restarts).toBeGreaterThan(10);
    expect(counts.compactions).toBeGreaterThan(10);
    expect(counts.snapMessages).toBeGreaterThan(0);
    expect(applied.size).toBeGreaterThan(200);
  });
});
