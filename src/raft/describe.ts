/**
 * Deterministic one-line descriptions of raft values, for logs, scenario files
 * and simulator traces (CONVENTIONS 12). Same value in, same text out.
 */

import { assertNever } from "./assert.ts";
import { decodeConfChange } from "./confchange.ts";
import type { ConfState, Entry, HardState, Message, Ready, Snapshot } from "./types.ts";

const DATA_CHARS_MAX = 24;

/** Printable ASCII as a quoted string, anything else as hex; long data is cut with its length. */
export function describeData(data: Uint8Array): string {
  let printable = true;
  for (const b of data) if (b < 0x20 || b > 0x7e) printable = false;
  const text = printable
    ? JSON.stringify(String.fromCharCode(...data.subarray(0, DATA_CHARS_MAX)))
    : `0x${Array.from(data.subarray(0, DATA_CHARS_MAX / 2), (b) => b.toString(16).padStart(2, "0")).join("")}`;
  return data.length > (printable ? DATA_CHARS_MAX : DATA_CHARS_MAX / 2) ? `${text}…(${data.length}B)` : text;
}

/** `term/index` followed by the payload: `3/7 "put x"`, `3/8 conf addVoter 4`, `3/9 noop`. */
export function describeEntry(e: Entry): string {
  if (e.kind === "conf") {
    const cc = decodeConfChange(e.data);
    return `${e.term}/${e.index} conf ${cc.kind} ${cc.member}`;
  }
  return `${e.term}/${e.index} ${e.data.length === 0 ? "noop" : describeData(e.data)}`;
}

export function describeConf(c: ConfState): string {
  const learners = c.learners.length > 0 ? ` learners=(${c.learners.join(" ")})` : "";
  return `voters=(${c.voters.join(" ")})${learners}`;
}

export function describeSnapshot(s: Snapshot): string {
  return `snap ${s.meta.term}/${s.meta.index} ${describeConf(s.meta.conf)} ${s.data.length}B`;
}

export function describeHardState(h: HardState): string {
  return `term=${h.term} vote=${h.vote} commit=${h.commit}`;
}

function describeEntries(es: readonly Entry[]): string {
  return `[${es.map(describeEntry).join(", ")}]`;
}

/** `1->2 app term=2 prev=1/4 commit=3 [2/5 "x"]`. */
export function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case "app":
      return `${head} prev=${m.prevTerm}/${m.prevIndex} commit=${m.commit} ${describeEntries(m.entries)}`;
    case "appResp":
      return m.reject
        ? `${head} reject index=${m.index} hint=${m.hintTerm}/${m.hintIndex}`
        : `${head} index=${m.index}`;
    case "vote":
    case "preVote":
      return `${head} last=${m.lastTerm}/${m.lastIndex}${m.transfer ? " transfer" : ""}`;
    case "voteResp":
    case "preVoteResp":
      return `${head}${m.reject ? " reject" : ""}`;
    case "heartbeat":
      return `${head} commit=${m.commit}${m.context > 0 ? ` ctx=${m.context}` : ""}`;
    case "heartbeatResp":
      return `${head}${m.context > 0 ? ` ctx=${m.context}` : ""}`;
    case "snap":
      return `${head} ${describeSnapshot(m.snapshot)}`;
    case "timeoutNow":
      return head;
    case "readIndex":
      return `${head} req=${m.requestId}`;
    case "readIndexResp":
      return `${head} req=${m.requestId} index=${m.index}${m.reject ? " reject" : ""}`;
    default:
      return assertNever(m, "message");
  }
}

/** A multi-line description of a Ready, one item per line, empty parts omitted. */
export function describeReady(rd: Ready): string {
  const lines = [`soft: ${rd.softState.role} leader=${rd.softState.leader} term=${rd.softState.term}`];
  if (rd.hardState) lines.push(`hard: ${describeHardState(rd.hardState)}`);
  if (rd.snapshot) lines.push(`snapshot: ${describeSnapshot(rd.snapshot)}`);
  if (rd.entries.length > 0) lines.push(`entries: ${describeEntries(rd.entries)}`);
  if (rd.committedEntries.length > 0) lines.push(`committed: ${describeEntries(rd.committedEntries)}`);
  for (const m of rd.messages) lines.push(`send: ${describeMessage(m)}`);
  for (const r of rd.readStates)
    lines.push(`read: ${r.requestId} index=${r.index}${r.rejected ? " rejected" : ""}`);
  return lines.join("\n");
}
