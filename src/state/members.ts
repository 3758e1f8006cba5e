/**
 * The cluster's membership as etcd's Cluster service shows it: every member's
 * id, name, peer and client URLs and whether it is a learner, plus the ids
 * removed for good (etcd's members_removed bucket: a removed id never comes
 * back). Replicated like the key space:
 * - Raft's membership changes (conf entries) add and remove members; the
 *   change's context carries the new member's name (may be empty: etcd's
 *   MemberAdd has none) and peer URLs as JSON, `encodeMemberContext`;
 * - `publish` (a normal entry a member proposes after it starts) sets its name
 *   and client URLs; `update` (etcd MemberUpdate) replaces its peer URLs.
 *
 * The voter/learner sets mirror Raft's ConfState rule for rule
 * (raft/confchange.ts), so the table and Raft agree on who votes.
 */

import type { ConfChange, MemberId } from "../raft/index.ts";
import { assert } from "../raft/index.ts";

/** One member, as etcdserverpb.Member has it. */
export interface MemberRecord {
  readonly id: MemberId;
  /** Empty until the member published itself (etcdctl shows "unstarted"). */
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
}

/** What a conf change's context carries. */
export interface MemberContext {
  readonly name: string;
  readonly peerUrls: readonly string[];
}

/** Snapshot shape (inside the machine's JSON snapshot). */
export interface MemberTableSnapshot {
  readonly members: readonly MemberRecord[];
  readonly removed: readonly number[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A conf change's context bytes for a member with `name` and `peerUrls`. */
export function encodeMemberContext(ctx: MemberContext): Uint8Array {
  return encoder.encode(JSON.stringify({ name: ctx.name, peerUrls: [...ctx.peerUrls] }));
}

/**
 * The context of a conf entry. Entries come from our own log, but an empty
 * context (a promotion, or a log written by the simulator) is normal: it
 * leaves name and URLs as they are.
 */
export function decodeMemberContext(data: Uint8Array): MemberContext | undefined {
  if (data.length === 0) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as { name?: unknown; peerUrls?: unknown };
  const name = typeof o.name === "string" ? o.name : "";
  const peerUrls =
    Array.isArray(o.peerUrls) && o.peerUrls.every((u) => typeof u === "string")
      ? (o.peerUrls as string[])
      : [];
  return { name, peerUrls };
}

/** The membership table. See the file header. */
export class MemberTable {
  private readonly members = new Map<MemberId, MemberRecord>();
  private readonly removedIds = new Set<number>();

  /** Applies a committed conf change (after Raft's own rule: see raft/confchange.ts). */
  applyConfChange(cc: ConfChange): void {
    const ctx = decodeMemberContext(cc.context);
    const old = this.members.get(cc.member);
    switch (cc.kind) {
      case "addVoter":
      case "addLearner": {
        if (cc.kind === "addLearner" && old !== undefined && !old.isLearner) return;
        this.removedIds.delete(cc.member);
        this.members.set(cc.member, {
          id: cc.member,
          name: old?.name || ctx?.name || "",
          peerUrls: ctx !== undefined && ctx.peerUrls.length > 0 ? ctx.peerUrls : (old?.peerUrls ?? []),
          clientUrls: old?.clientUrls ?? [],
          isLearner: cc.kind === "addLearner",
        });
        return;
      }
      case "remove": {
        const voters = this.list().filter((m) => !m.isLearner);
        if (old !== undefined && !old.isLearner && voters.length === 1) return; // never the last voter
        this.members.delete(cc.member);
        this.removedIds.add(cc.member);
        return;
      }
    }
  }

  /** A member's name and client URLs (etcd's publish); false if it is not a member. */
  publish(id: MemberId, name: string, clientUrls: readonly string[]): boolean {
    const m = this.members.get(id);
    if (m === undefined) return false;
    this.members.set(id, { ...m, name, clientUrls: [...clientUrls] });
    return true;
  }

  /** Replaces a member's peer URLs (etcd MemberUpdate); false if it is not a member. */
  update(id: MemberId, peerUrls: readonly string[]): boolean {
    const m = this.members.get(id);
    if (m === undefined) return false;
    this.members.set(id, { ...m, peerUrls: [...peerUrls] });
    return true;
  }

  get(id: MemberId): MemberRecord | undefined {
    return this.members.get(id);
  }

  /** Every member, by id. */
  list(): MemberRecord[] {
    return [...this.members.values()].sort((a, b) => a.id - b.id);
  }

  /** Whether `id` was a member and was removed. */
  isRemoved(id: number): boolean {
    return this.removedIds.has(id);
  }

  get size(): number {
    return this.members.size;
  }

  snapshot(): MemberTableSnapshot {
    return {
      members: this.list().map((m) => ({ ...m, peerUrls: [...m.peerUrls], clientUrls: [...m.clientUrls] })),
      removed: [...this.removedIds].sort((a, b) => a - b),
    };
  }

  static restore(s: MemberTableSnapshot | undefined): MemberTable {
    const t = new MemberTable();
    if (s === undefined) return t;
    for (const m of s.members) {
      assert(Number.isSafeInteger(m.id) && m.id > 0, "members snapshot: bad member id");
      t.members.set(m.id, { ...m });
    }
    for (const id of s.removed) t.removedIds.add(id);
    return t;
  }
}
