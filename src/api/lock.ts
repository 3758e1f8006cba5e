/**
 * v3lockpb.Lock, server side: etcd 3.4's v3lock service (etcdserver/api/
 * v3lock/lock.go over clientv3/concurrency/mutex.go), without its bug.
 *
 * Lock(name, lease):
 * - The session's lease (recipes.ts: lease 0 gets a new 60-second lease) and
 *   its key `name/<lease hex>`. One txn: if the key does not exist, put it
 *   (empty value, with the lease) else get it; and get the oldest key under
 *   `name/`. Our create revision is the new key's, or the existing one's (the
 *   same lease locking the same name again holds it again, as in etcd).
 * - The oldest key is ours: answer at once with the txn's header.
 * - Otherwise wait our turn (recipes.ts waitTurn, FIFO by create revision)
 *   and answer with the header of the read that confirmed it. The key's
 *   create revision is the fencing token.
 * - The key is lost while waiting (lease expired or revoked, key deleted):
 *   "mutex: session is expired", code Unknown (etcd ≥ 3.5's answer; etcd 3.4
 *   answers success with a key that no longer exists: issue 11456). The call
 *   is cancelled, or the wait fails: our key is deleted (etcd's mutex does),
 *   then the error is answered.
 * - A lease that does not exist: "etcdserver: requested lease not found".
 *
 * Unlock(key): deletes the key (any key: etcd does not check it is a lock);
 * answers the delete's header. An empty key: "etcdserver: key is not provided".
 *
 * Every error goes out with code Unknown (recipes.ts); a learner refuses both.
 * Permissions: read under `name/`, write the key (what etcd's client needs).
 */

import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Revision } from "../state/index.ts";
import { revision } from "../state/index.ts";
import type { ApiHost, CallInfo } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import { writeResultToWire } from "./convert.ts";
import type { WireMessage } from "./proto.ts";
import {
  CallCancelled,
  deleteIfCreatedAt,
  firstCreateRange,
  rangeKvs,
  readPrefix,
  recipePrefix,
  recipeUnary,
  runTxn,
  sessionKey,
  sessionLease,
  waitTurn,
  wireBytes,
} from "./recipes.ts";

type W = WireMessage;

/** The Lock service's implementation for the gRPC server. */
export function lockService(host: ApiHost): UntypedServiceImplementation {
  return {
    Lock: recipeUnary(host, (w, call) => lock(host, w, call)),
    Unlock: recipeUnary(host, (w, call) => unlock(host, w, call)),
  };
}

async function lock(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const prefix = recipePrefix(wireBytes(w.name));
  const lease = await sessionLease(host, call, w.lease);
  const key = sessionKey(prefix, lease);
  const auth = await host.authorize(call, [readPrefix(prefix), { key, type: "write" }]);

  const r = await runTxn(
    host,
    {
      compare: [{ key, target: "create", result: "equal", createRevision: revision(0) }],
      success: [
        { type: "put", request: { key, value: new Uint8Array(0), lease } },
        { type: "range", request: firstCreateRange(prefix) },
      ],
      failure: [
        { type: "range", request: { key } },
        { type: "range", request: firstCreateRange(prefix) },
      ],
    },
    auth,
  );
  const mine = rangeKvs(r.responses[0])[0];
  const myRev: Revision = r.succeeded ? r.header.revision : mine!.createRevision;
  const owner = rangeKvs(r.responses[1])[0];
  const answer = (rev: number): W => ({ header: host.header(rev), key: Buffer.from(key) });
  if (owner === undefined || owner.createRevision === myRev) return answer(r.header.revision);

  const turn = await waitTurn(host, call, { prefix, key, createRevision: myRev });
  switch (turn.kind) {
    case "acquired":
      return answer(turn.revision);
    case "lost":
      throw new ErrorAnswer("SessionExpired");
    case "cancelled":
      await deleteIfCreatedAt(host, key, myRev, auth);
      throw new CallCancelled();
    case "failed":
      await deleteIfCreatedAt(host, key, myRev, auth);
      throw turn.error;
  }
}

async function unlock(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const key = wireBytes(w.key);
  if (key.length === 0) throw new ErrorAnswer("EmptyKey");
  const auth = await host.authorize(call, [{ key, type: "write" }]);
  const out = await host.propose({ type: "deleteRange", request: { key }, auth });
  const answer = writeResultToWire(out.result, (rev) => host.header(rev));
  if (typeof answer === "string") throw new ErrorAnswer(answer);
  return { header: answer.header };
}
