/**
 * Datadriven scenario harness for the Raft core (the style of etcd-raft's
 * testdata): a scenario file is a list of commands, each followed by `----`
 * and the expected trace, ended by a blank line. `REWRITE=1 npx vitest run
 * test/raft` rewrites the expected traces; review the diff.
 *
 * Commands (ids are member ids):
 *   cluster voters=1,2,3 [prevote=false] [checkquorum=false] [inflight=N] [appendbytes=N]
 *   add-member <id> (a new, empty member that knows no configuration)
 *   campaign <id> | tick <id> [n] | tick-all [n]
 *   propose <id> <data> | propose-conf-change <id> add-voter|add-learner|remove <member>
 *   read-index <id> <requestId> | transfer-leadership <from> <to> | compact <id> <index>
 *   stabilize | process-ready <id> | deliver <id> | drop <id>
 *   isolate <id> | partition <ids> <ids> | heal | crash <id> | restart <id>
 *   status <id> | log <id> | applied <id>
 */

import type {
  Entry,
  HardState,
  MemberId,
  Message,
  RaftConfig,
  Ready,
  Snapshot,
} from "../../src/raft/index.ts";
import {
  bootstrapState,
  describeConf,
  describeEntry,
  describeMessage,
  describeReady,
  joiningState,
  logIndex,
  memberId,
  Raft,
} from "../../src/raft/index.ts";

interface Storage {
  hardState: HardState;
  snapshot: Snapshot;
  entries: Entry[];
}

interface Node {
  readonly id: MemberId;
  raft: Raft | undefined;
  readonly storage: Storage;
  inbox: Message[];
  applied: Entry[];
  appliedSnapshot: Snapshot | undefined;
}

/**
 * A deterministic election jitter: member N times out after electionTicks + (N - 1)
 * ticks (10, 11, 12, ... by default), so scenarios never depend on randomness and
 * lower ids time out first.
 */
function fixedRng(id: MemberId) {
  return { int: (n: number) => (id - 1) % n };
}

export class ScenarioEnv {
  private nodes = new Map<MemberId, Node>();
  private blocked = new Set<string>();
  private opts: Omit<RaftConfig, "id" | "rng"> = { electionTicks: 10, heartbeatTicks: 1 };

  run(cmd: string, args: string[]): string[] {
    const out: string[] = [];
    const id = (i: number) => {
      const v = Number(args[i]);
      if (!Number.isInteger(v) || !this.nodes.has(memberId(v))) throw new Error(`bad member id '${args[i]}'`);
      return memberId(v);
    };
    const raft = (i: number) => {
      const n = this.nodes.get(id(i))!;
      if (n.raft === undefined) throw new Error(`member ${n.id} is down`);
      return n.raft;
    };
    switch (cmd) {
      case "cluster":
        this.cluster(args);
        break;
      case "add-member": {
        const mid = memberId(Number(args[0]));
        this.addNode(mid, { voters: [], learners: [] });
        break;
      }
      case "campaign":
        raft(0).campaignNow();
        break;
      case "tick": {
        const n = Number(args[1] ?? "1");
        for (let i = 0; i < n; i++) raft(0).tick();
        break;
      }
      case "tick-all": {
        const n = Number(args[0] ?? "1");
        for (let i = 0; i < n; i++) for (const node of this.nodes.values()) node.raft?.tick();
        break;
      }
      case "propose": {
        const res = raft(0).propose([new TextEncoder().encode(args.slice(1).join(" "))]);
        out.push(
          res.ok ? `ok index=${res.index} term=${res.term}` : `refused: ${res.reason} leader=${res.leader}`,
        );
        break;
      }
      case "propose-conf-change": {
        const kinds = { "add-voter": "addVoter", "add-learner": "addLearner", remove: "remove" } as const;
        const kind = kinds[args[1] as keyof typeof kinds];
        if (kind === undefined) throw new Error(`bad conf change '${args[1]}'`);
        const res = raft(0).proposeConfChange({
          kind,
          member: memberId(Number(args[2])),
          context: new Uint8Array(0),
        });
        out.push(
          res.ok ? `ok index=${res.index} term=${res.term}` : `refused: ${res.reason} leader=${res.leader}`,
        );
        break;
      }
      case "read-index":
        raft(0).readIndex(args[1]!);
        break;
      case "transfer-leadership":
        out.push(raft(0).transferLeadership(memberId(Number(args[1]))) ? "ok" : "refused");
        break;
      case "compact": {
        const node = this.nodes.get(id(0))!;
        const r = raft(0);
        const index = logIndex(Number(args[1]));
        r.compact(index, new TextEncoder().encode(`state@${index}`));
        node.storage.snapshot = r.log.snapshot;
        node.storage.entries = node.storage.entries.filter((e) => e.index > index);
        out.push(`compacted to ${index}; first index now ${r.log.firstIndex()}`);
        break;
      }
      case "stabilize":
        this.stabilize(out);
        break;
      case "process-ready":
        this.processReady(this.nodes.get(id(0))!, out);
        break;
      case "deliver":
        this.deliver(this.nodes.get(id(0))!, out);
        break;
      case "drop": {
        const node = this.nodes.get(id(0))!;
        for (const m of node.inbox) out.push(`dropped ${describeMessage(m)}`);
        node.inbox = [];
        break;
      }
      case "isolate": {
        const victim = id(0);
        for (const o of this.nodes.keys()) {
          if (o === victim) continue;
          this.blocked.add(`${victim}>${o}`);
          this.blocked.add(`${o}>${victim}`);
        }
        break;
      }
      case "partition": {
        const a = args[0]!.split(",").map(Number);
        const b = args[1]!.split(",").map(Number);
        for (const x of a) for (const y of b) this.blocked.add(`${x}>${y}`).add(`${y}>${x}`);
        break;
      }
      case "heal":
        this.blocked.clear();
        break;
      case "crash": {
        const node = this.nodes.get(id(0))!;
        node.raft = undefined;
        node.inbox = [];
        break;
      }
      case "restart": {
        const node = this.nodes.get(id(0))!;
        node.raft = this.newRaft(node.id, node.storage);
        node.applied = [];
        break;
      }
      case "status":
        out.push(this.status(raft(0)));
        break;
      case "log": {
        const r = raft(0);
        out.push(`first=${r.log.firstIndex()} last=${r.log.lastIndex()} commit=${r.log.committed}`);
        const lo = r.log.firstIndex();
        const hi = r.log.lastIndex();
        if (hi >= lo)
          out.push(
            r.log
              .slice(lo, logIndex(hi + 1), Number.POSITIVE_INFINITY)
              .map(describeEntry)
              .join(", "),
          );
        break;
      }
      case "applied": {
        const node = this.nodes.get(id(0))!;
        if (node.appliedSnapshot)
          out.push(`snapshot ${node.appliedSnapshot.meta.term}/${node.appliedSnapshot.meta.index}`);
        out.push(node.applied.map(describeEntry).join(", ") || "(nothing)");
        break;
      }
      default:
        throw new Error(`unknown command '${cmd}'`);
    }
    return out;
  }

  private cluster(args: string[]): void {
    const kv = new Map(args.map((a) => a.split("=") as [string, string]));
    const ids = (s: string | undefined) => (s ? s.split(",").map((x) => memberId(Number(x))) : []);
    const voters = ids(kv.get("voters"));
    this.opts = {
      electionTicks: 10,
      heartbeatTicks: 1,
      preVote: kv.get("prevote") !== "false",
      checkQuorum: kv.get("checkquorum") !== "false",
      ...(kv.has("inflight") ? { inflightMessagesMax: Number(kv.get("inflight")) } : {}),
      ...(kv.has("appendbytes") ? { appendBytesMax: Number(kv.get("appendbytes")) } : {}),
    };
    for (const v of voters) this.addNode(v, { voters, learners: [] });
  }

  /** A founding member (membership bootstrapped into the log) or, with no voters, one that will join. */
  private addNode(id: MemberId, conf: { voters: MemberId[]; learners: MemberId[] }): void {
    const init = conf.voters.length > 0 ? bootstrapState(conf.voters) : joiningState();
    const storage: Storage = {
      hardState: init.hardState,
      snapshot: init.snapshot,
      entries: init.entries.slice(),
    };
    this.nodes.set(id, {
      id,
      raft: this.newRaft(id, storage),
      storage,
      inbox: [],
      applied: [],
      appliedSnapshot: undefined,
    });
  }

  private newRaft(id: MemberId, s: Storage): Raft {
    return new Raft(
      { id, rng: fixedRng(id), ...this.opts },
      {
        hardState: s.hardState,
        snapshot: s.snapshot,
        entries: s.entries.slice(),
        applied: s.snapshot.meta.index,
      },
    );
  }

  private status(r: Raft): string {
    const lines = [
      `${r.id}: ${r.role} term=${r.term} lead=${r.lead} vote=${r.vote} commit=${r.log.committed} applied=${r.log.applied} last=${r.log.lastIndex()} ${describeConf(r.conf)}`,
    ];
    if (r.role === "leader") {
      for (const p of [...r.conf.voters, ...r.conf.learners]) {
        if (p === r.id) continue;
        const pr = r.progress(p);
        if (pr)
          lines.push(
            `  ${p}: ${pr.state} match=${pr.match} next=${pr.next}${pr.isLearner ? " learner" : ""}`,
          );
      }
    }
    return lines.join("\n");
  }

  private processReady(node: Node, out: string[]): boolean {
    const r = node.raft;
    if (r === undefined || !r.hasReady()) return false;
    const rd: Ready = r.ready();
    out.push(`> ${node.id} handling Ready`);
    for (const line of describeReady(rd).split("\n")) out.push(`  ${line}`);
    const s = node.storage;
    if (rd.snapshot) {
      s.snapshot = rd.snapshot;
      s.entries = [];
      node.appliedSnapshot = rd.snapshot;
      node.applied = [];
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index;
      s.entries = s.entries.filter((e) => e.index < first).concat(rd.entries);
    }
    if (rd.hardState) s.hardState = rd.hardState;
    for (const m of rd.messages) {
      const to = this.nodes.get(m.to);
      if (to === undefined || to.raft === undefined || this.blocked.has(`${m.from}>${m.to}`)) continue;
      to.inbox.push(m);
    }
    node.applied.push(...rd.committedEntries);
    r.advance(rd);
    return true;
  }

  private deliver(node: Node, out: string[]): boolean {
    if (node.raft === undefined || node.inbox.length === 0) return false;
    const msgs = node.inbox;
    node.inbox = [];
    out.push(`> ${node.id} receiving messages`);
    for (const m of msgs) {
      out.push(`  ${describeMessage(m)}`);
      node.raft.step(m);
    }
    return true;
  }

  /** Processes Readies and delivers messages until nothing is left to do. */
  private stabilize(out: string[]): void {
    for (let round = 0; round < 1000; round++) {
      let progress = false;
      for (const node of this.nodes.values()) progress = this.processReady(node, out) || progress;
      for (const node of this.nodes.values()) progress = this.deliver(node, out) || progress;
      if (!progress) return;
    }
    throw new Error("stabilize: no quiescence after 1000 rounds");
  }
}

/** One command of a scenario file with its expected output. */
export interface ScenarioStep {
  readonly line: number;
  readonly comments: string[];
  readonly command: string;
  readonly expected: string;
}

/** Parses a scenario file: comments (#) and a command, `----`, expected output, blank line. */
export function parseScenario(text: string): ScenarioStep[] {
  const lines = text.split("\n");
  const steps: ScenarioStep[] = [];
  let i = 0;
  while (i < lines.length) {
    const comments: string[] = [];
    while (i < lines.length && (lines[i]!.startsWith("#") || lines[i]!.trim() === "")) {
      if (lines[i]!.startsWith("#")) comments.push(lines[i]!);
      i++;
    }
    if (i >= lines.length) break;
    const line = i + 1;
    const command = lines[i++]!;
    if (lines[i] !== "----") throw new Error(`line ${i + 1}: expected ---- after '${command}'`);
    i++;
    const expected: string[] = [];
    while (i < lines.length && lines[i] !== "") expected.push(lines[i++]!);
    steps.push({ line, comments, command, expected: expected.join("\n") });
  }
  return steps;
}

/** Renders steps back to a file, with the given actual outputs. */
export function renderScenario(steps: readonly ScenarioStep[], outputs: readonly string[]): string {
  const parts = steps.map((s, i) => {
    const head = [...s.comments, s.command, "----"].join("\n");
    const body = outputs[i]!;
    return body === "" ? `${head}\n` : `${head}\n${body}\n`;
  });
  return `${parts.join("\n")}`;
}
