/**
 * etcdserverpb.Cluster: MemberAdd, MemberRemove, MemberUpdate, MemberPromote
 * and MemberList, with etcd 3.4's checks (`--strict-reconfig-check`, on by
 * default in 3.4) and error texts:
 * - MemberAdd: peer URLs must parse (http/https with host and port) and be
 *   used by no member; at most one learner; a voter only if enough members
 *   have started (published their name) to keep a quorum of the grown cluster;
 *   and only while every voter is connected to this member ("unhealthy cluster").
 * - MemberRemove: a voter only if the started voters left still make a
 *   quorum, and, if the member is connected, the connected voters left too.
 * - MemberPromote: only a learner, only with enough started voters, and only
 *   once its log is within 90% of the leader's (checked by the leader).
 * - MemberUpdate: replaces a member's peer URLs (a replicated command).
 * Whether the change still fits the membership (the id, the peer URLs, the
 * learner limit, the learner's readiness) is checked by the leader against
 * its own table just before it proposes (member.ts proposeConfLocal), so
 * changes racing through different members cannot both pass.
 * Membership changes go through Raft one at a time (member.ts
 * `changeMembership`); the answer comes once this member applied the change.
 * MemberList is this member's applied view, as in etcd 3.4 (not a ReadIndex).
 */

import { randomInt } from "node:crypto";
import type { ConfChange, MemberId } from "../raft/index.ts";
import { memberId } from "../raft/index.ts";
import type { Member } from "../server/member.ts";
import type { MemberRecord } from "../state/index.ts";
import { encodeMemberContext, MEMBER_TEXT_LENGTH_MAX, MEMBER_URLS_MAX } from "../state/index.ts";
import { RequestRejected } from "./convert.ts";
import type { WireMessage } from "./proto.ts";

type W = WireMessage;

/** Member ids are 48-bit: positive safe integers that fit raft's MemberId (etcd uses 64). */
const MEMBER_ID_BITS = 48;

export interface ClusterApiOptions {
  readonly member: Member;
  /** Whether this member has a live connection to `peer` (transport activity; etcd's ActiveSince). */
  readonly peerActive: (peer: MemberId) => boolean;
  /** The response header at the current revision. */
  readonly header: () => W;
}

export class ClusterApi {
  constructor(private readonly options: ClusterApiOptions) {}

  private get member(): Member {
    return this.options.member;
  }

  private members(): MemberRecord[] {
    return this.member.machine.memberList();
  }

  async list(): Promise<W> {
    return { header: this.options.header(), members: this.members().map(memberToWire) };
  }

  async add(w: W): Promise<W> {
    const peerUrls = parsePeerUrls(w.peerURLs);
    const isLearner = w.isLearner === true;
    const members = this.members();
    // Peer URLs in use and the learner limit are checked by the leader, against its table (member.ts).
    if (!isLearner) {
      const voters = members.filter((m) => !m.isLearner);
      const started = voters.filter((m) => m.name !== "").length;
      // etcd lets a started single member grow to two (its documented restore procedure).
      const growingOne = voters.length === 1 && started === 1;
      if (!growingOne && started < quorum(voters.length + 1))
        throw new RequestRejected("MemberNotEnoughStarted", "not enough started members");
    }
    // etcd's mayAddMember: every voter must be connected, or the grown cluster may be unable to commit.
    const voters = members.filter((m) => !m.isLearner);
    if (voters.some((m) => m.id !== this.member.id && !this.options.peerActive(m.id)))
      throw new RequestRejected("Unhealthy", "a voter is not connected");
    const id = this.newMemberId();
    const cc: ConfChange = {
      kind: isLearner ? "addLearner" : "addVoter",
      member: id,
      context: encodeMemberContext({ name: "", peerUrls }),
    };
    await this.member.changeMembership(cc);
    return {
      header: this.options.header(),
      member: { ID: String(id), name: "", peerURLs: peerUrls, clientURLs: [], isLearner },
      members: this.members().map(memberToWire),
    };
  }

  async remove(w: W): Promise<W> {
    const id = this.existing(w.ID);
    const target = this.member.machine.member(id)!;
    if (!target.isLearner) {
      const voters = this.members().filter((m) => !m.isLearner);
      const startedLeft = voters.filter((m) => m.id !== id && m.name !== "").length;
      if (startedLeft < quorum(voters.length - 1))
        throw new RequestRejected("MemberNotEnoughStarted", "not enough started members");
      // A member that is down is safe to remove; a live one must leave a live quorum behind.
      if (id === this.member.id || this.options.peerActive(id)) {
        const active = voters.filter((m) => m.id === this.member.id || this.options.peerActive(m.id)).length;
        if (active - 1 < quorum(voters.length - 1))
          throw new RequestRejected("Unhealthy", "unhealthy cluster");
      }
    }
    await this.member.changeMembership({ kind: "remove", member: id, context: new Uint8Array(0) });
    return { header: this.options.header(), members: this.members().map(memberToWire) };
  }

  async promote(w: W): Promise<W> {
    const id = this.existing(w.ID);
    // Whether it is a learner, and ready, is checked by the leader (member.ts).
    const voters = this.members().filter((m) => !m.isLearner);
    // The learner counts as started (etcd's IsReadyToPromoteMember).
    const started = voters.filter((m) => m.name !== "").length + 1;
    if (started < quorum(voters.length + 1))
      throw new RequestRejected("MemberNotEnoughStarted", "not enough started members");
    // No context: a promotion keeps the member's name and URLs.
    await this.member.changeMembership({ kind: "addVoter", member: id, context: new Uint8Array(0) });
    return { header: this.options.header(), members: this.members().map(memberToWire) };
  }

  async update(w: W): Promise<W> {
    const id = this.existing(w.ID);
    const peerUrls = parsePeerUrls(w.peerURLs);
    const usedByOthers = new Set(this.members().flatMap((m) => (m.id === id ? [] : m.peerUrls)));
    if (peerUrls.some((u) => usedByOthers.has(u)))
      throw new RequestRejected("PeerURLExist", "peer URL in use");
    const out = await this.member.write({ type: "memberUpdate", member: id, peerUrls });
    if (out.result.kind === "failed") throw new RequestRejected("MemberNotFound", "member not found");
    return { header: this.options.header(), members: this.members().map(memberToWire) };
  }

  /** The member named by a request's ID field, which must exist (etcd: member not found, also for removed ids). */
  private existing(raw: unknown): MemberId {
    let n: bigint;
    try {
      n = BigInt(String(raw ?? "0"));
    } catch {
      throw new RequestRejected("MemberNotFound", "bad member id");
    }
    if (n <= 0n || n > BigInt(Number.MAX_SAFE_INTEGER))
      throw new RequestRejected("MemberNotFound", "no such id");
    const id = Number(n);
    if (this.member.machine.member(id as MemberId) === undefined)
      throw new RequestRejected("MemberNotFound", "member not found");
    return id as MemberId;
  }

  /** A fresh random id: never a member's, never a removed one's (etcd never reuses an id). */
  private newMemberId(): MemberId {
    for (;;) {
      const id = randomInt(1, 2 ** MEMBER_ID_BITS);
      if (this.member.machine.member(id as MemberId) === undefined && !this.member.machine.memberRemoved(id))
        return memberId(id);
    }
  }
}

function quorum(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

export function memberToWire(m: MemberRecord): W {
  return {
    ID: String(m.id),
    name: m.name,
    peerURLs: [...m.peerUrls],
    clientURLs: [...m.clientUrls],
    isLearner: m.isLearner,
  };
}

/**
 * Peer URLs from a request: at least one, each http(s)://host:port with
 * nothing else (etcd's types.NewURLs rules), else "given member URLs are invalid".
 */
export function parsePeerUrls(raw: unknown): string[] {
  const list = Array.isArray(raw) ? raw : [];
  const bad = (why: string): never => {
    throw new RequestRejected("MemberBadURLs", why);
  };
  if (list.length === 0 || list.length > MEMBER_URLS_MAX) bad("no peer URLs, or too many");
  const out: string[] = [];
  for (const r of list) {
    if (typeof r !== "string" || r.length > MEMBER_TEXT_LENGTH_MAX) bad("peer URL not a string");
    let u: URL;
    try {
      u = new URL(r as string);
    } catch {
      return bad(`bad peer URL ${String(r)}`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") bad("peer URL scheme must be http or https");
    if (u.hostname === "" || u.port === "") bad("peer URL needs a host and a port");
    if ((u.pathname !== "/" && u.pathname !== "") || u.search !== "" || u.hash !== "" || u.username !== "")
      bad("peer URL has more than scheme, host and port");
    out.push(`${u.protocol}//${u.host}`);
  }
  if (new Set(out).size !== out.length) bad("duplicate peer URL");
  return out.sort();
}
