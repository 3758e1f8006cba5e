/**
 * The replicated auth store (src/state/auth.ts) and its place in the state
 * machine: etcd's rules for users, roles and root (auth/store.go, release-3.4),
 * permission ranges against a small dumb model (fast-check), tokens and their
 * bound, the checks apply makes for the caller a command carries (etcd's
 * apply_auth.go: nested txns, leases, compaction, ErrAuthOldRevision), the
 * codec of the auth commands, and snapshots (old ones without auth included).
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { memberId } from "../../src/raft/index.ts";
import type {
  AccessCheck,
  AuthCommand,
  Command,
  CommandAuth,
  Permission,
  PermissionType,
} from "../../src/state/index.ts";
import {
  AUTH_TOKENS_MAX,
  AuthStore,
  CommandDecodeError,
  decodeCommand,
  encodeCommand,
  encodeMemberContext,
  FIRST_AUTH_REVISION,
  leaseId,
  permissionsAllow,
  StateMachine,
  tryDecodeCommand,
} from "../../src/state/index.ts";

const te = new TextEncoder();
const b = (s: string): Uint8Array => te.encode(s);
const END = Uint8Array.of(0);
const NONE = new Uint8Array(0);
const PREFIX = "abcdefghABCDEFGH";

/** A store and the next index to apply at. */
class Store {
  readonly s = new AuthStore();
  index = 0;
  run(cmd: AuthCommand) {
    this.index++;
    return this.s.apply(cmd, this.index);
  }
  /** root with the root role, and auth enabled. */
  enableWithRoot(): void {
    this.run({ type: "authUserAdd", user: "root", passwordHash: "h" });
    this.run({ type: "authUserGrantRole", user: "root", role: "root" });
    expect(this.run({ type: "authEnable" })).toEqual({ ok: true });
  }
  caller(user: string): CommandAuth {
    return { user, revision: this.s.revision() };
  }
}

const perm = (type: PermissionType, key: string, rangeEnd: Uint8Array | string = NONE): Permission => ({
  type,
  key: b(key),
  rangeEnd: typeof rangeEnd === "string" ? b(rangeEnd) : rangeEnd,
});

describe("AuthStore: etcd's rules", () => {
  it("enable needs a root user with the root role (the role need not exist); enable keeps the revision, disable bumps it", () => {
    const t = new Store();
    expect(t.s.revision()).toBe(FIRST_AUTH_REVISION);
    expect(t.run({ type: "authEnable" })).toEqual({ ok: false, error: "rootUserNotExist" });
    t.run({ type: "authUserAdd", user: "root", passwordHash: "h" });
    expect(t.run({ type: "authEnable" })).toEqual({ ok: false, error: "rootRoleNotExist" });
    expect(t.run({ type: "authUserGrantRole", user: "root", role: "root" })).toEqual({ ok: true });
    expect(t.s.role("root")).toBeUndefined();
    const rev = t.s.revision();
    expect(t.run({ type: "authEnable" })).toEqual({ ok: true });
    expect(t.s.isEnabled()).toBe(true);
    expect(t.s.revision()).toBe(rev);
    expect(t.run({ type: "authEnable" })).toEqual({ ok: true }); // again: ignored
    t.run({ type: "authDisable" });
    expect(t.s.isEnabled()).toBe(false);
    expect(t.s.revision()).toBe(rev + 1);
    t.run({ type: "authDisable" }); // again: nothing
    expect(t.s.revision()).toBe(rev + 1);
  });

  it("users: empty name, duplicates, unknown ones; roles sorted bytewise; a repeated grant is ignored", () => {
    const t = new Store();
    expect(t.run({ type: "authUserAdd", user: "", passwordHash: "h" })).toEqual({
      ok: false,
      error: "userEmpty",
    });
    expect(t.run({ type: "authUserAdd", user: "u", passwordHash: "h" })).toEqual({ ok: true });
    expect(t.run({ type: "authUserAdd", user: "u", passwordHash: "h" })).toEqual({
      ok: false,
      error: "userAlreadyExist",
    });
    expect(t.run({ type: "authUserGrantRole", user: "x", role: "r" })).toEqual({
      ok: false,
      error: "userNotFound",
    });
    expect(t.run({ type: "authUserGrantRole", user: "u", role: "r" })).toEqual({
      ok: false,
      error: "roleNotFound",
    });
    for (const r of ["zz", "b", "\u{1F600}", "\uFFFD"]) t.run({ type: "authRoleAdd", role: r });
    for (const r of ["zz", "\u{1F600}", "b", "\uFFFD"])
      t.run({ type: "authUserGrantRole", user: "u", role: r });
    // UTF-8 byte order: U+FFFD (EF BF BD) before U+1F600 (F0 9F 98 80), unlike UTF-16 order.
    expect(t.s.user("u")?.roles).toEqual(["b", "zz", "\uFFFD", "\u{1F600}"]);
    expect(t.s.roleNames()).toEqual(["b", "zz", "\uFFFD", "\u{1F600}"]);
    const rev = t.s.revision();
    expect(t.run({ type: "authUserGrantRole", user: "u", role: "b" })).toEqual({ ok: true });
    expect(t.s.revision()).toBe(rev);
    expect(t.run({ type: "authUserRevokeRole", user: "u", role: "nope" })).toEqual({
      ok: false,
      error: "roleNotGranted",
    });
    expect(t.run({ type: "authUserDelete", user: "x" })).toEqual({ ok: false, error: "userNotFound" });
    expect(t.run({ type: "authUserChangePassword", user: "x", passwordHash: "h" })).toEqual({
      ok: false,
      error: "userNotFound",
    });
    expect(t.run({ type: "authRoleAdd", role: "" })).toEqual({ ok: false, error: "roleEmpty" });
    expect(t.run({ type: "authRoleAdd", role: "b" })).toEqual({ ok: false, error: "roleAlreadyExist" });
    expect(t.run({ type: "authRoleDelete", role: "b" })).toEqual({ ok: true });
    expect(t.s.user("u")?.roles).toEqual(["zz", "\uFFFD", "\u{1F600}"]); // deleting a role takes it from users
    expect(t.run({ type: "authRoleDelete", role: "b" })).toEqual({ ok: false, error: "roleNotFound" });
  });

  it("root: not deleted, no root role lost, root role not deleted while enabled; all fine while disabled", () => {
    const t = new Store();
    t.run({ type: "authRoleAdd", role: "root" });
    t.enableWithRoot();
    expect(t.run({ type: "authUserDelete", user: "root" })).toEqual({ ok: false, error: "invalidAuthMgmt" });
    expect(t.run({ type: "authUserRevokeRole", user: "root", role: "root" })).toEqual({
      ok: false,
      error: "invalidAuthMgmt",
    });
    expect(t.run({ type: "authRoleDelete", role: "root" })).toEqual({ ok: false, error: "invalidAuthMgmt" });
    t.run({ type: "authDisable" });
    expect(t.run({ type: "authUserRevokeRole", user: "root", role: "root" })).toEqual({ ok: true });
    expect(t.run({ type: "authRoleDelete", role: "root" })).toEqual({ ok: true });
    expect(t.run({ type: "authUserDelete", user: "root" })).toEqual({ ok: true });
  });

  it("grant permission: none given, an invalid range, unknown role; equal key and end update; sorted by key", () => {
    const t = new Store();
    t.run({ type: "authRoleAdd", role: "r" });
    expect(t.run({ type: "authRoleGrantPermission", role: "r" })).toEqual({
      ok: false,
      error: "permissionNotGiven",
    });
    expect(t.run({ type: "authRoleGrantPermission", role: "r", permission: perm("read", "") })).toEqual({
      ok: false,
      error: "invalidAuthMgmt",
    });
    expect(t.run({ type: "authRoleGrantPermission", role: "r", permission: perm("read", "b", "a") })).toEqual(
      {
        ok: false,
        error: "invalidAuthMgmt",
      },
    );
    expect(t.run({ type: "authRoleGrantPermission", role: "r", permission: perm("read", "b", "b") })).toEqual(
      {
        ok: false,
        error: "invalidAuthMgmt",
      },
    );
    expect(t.run({ type: "authRoleGrantPermission", role: "x", permission: perm("read", "a") })).toEqual({
      ok: false,
      error: "roleNotFound",
    });
    t.run({ type: "authRoleGrantPermission", role: "r", permission: perm("read", "k", END) });
    t.run({ type: "authRoleGrantPermission", role: "r", permission: perm("write", "c", "d") });
    t.run({ type: "authRoleGrantPermission", role: "r", permission: perm("read", "c") });
    t.run({ type: "authRoleGrantPermission", role: "r", permission: perm("readwrite", "c", "d") });
    expect(t.s.role("r")?.permissions).toEqual([
      perm("readwrite", "c", "d"),
      perm("read", "c"),
      perm("read", "k", END),
    ]);
    expect(t.run({ type: "authRoleRevokePermission", role: "r", key: b("c"), rangeEnd: b("e") })).toEqual({
      ok: false,
      error: "permissionNotGranted",
    });
    expect(t.run({ type: "authRoleRevokePermission", role: "x", key: b("c"), rangeEnd: NONE })).toEqual({
      ok: false,
      error: "roleNotFound",
    });
    expect(t.run({ type: "authRoleRevokePermission", role: "r", key: b("c"), rangeEnd: NONE })).toEqual({
      ok: true,
    });
    expect(t.s.role("r")?.permissions).toEqual([perm("readwrite", "c", "d"), perm("read", "k", END)]);
  });

  it("checks: off passes all; no caller, an old revision, an unknown user; root passes; types and ranges", () => {
    const t = new Store();
    const read = (key: string, rangeEnd?: Uint8Array | string): AccessCheck => ({
      key: b(key),
      rangeEnd: typeof rangeEnd === "string" ? b(rangeEnd) : rangeEnd,
      type: "read",
    });
    expect(t.s.checkAccess(undefined, [read("x")])).toBeUndefined();
    expect(t.s.checkAdmin(undefined)).toBeUndefined();
    t.run({ type: "authRoleAdd", role: "r" });
    t.run({ type: "authRoleGrantPermission", role: "r", permission: perm("read", "a/", "a0") });
    t.run({ type: "authRoleGrantPermission", role: "r", permission: perm("write", "w") });
    t.run({ type: "authUserAdd", user: "u", passwordHash: "h" });
    t.run({ type: "authUserGrantRole", user: "u", role: "r" });
    t.enableWithRoot();
    const u = t.caller("u");
    expect(t.s.checkAccess(undefined, [read("a/1")])).toBe("userEmpty");
    expect(t.s.checkAccess(undefined, [])).toBe("userEmpty");
    expect(t.s.checkAccess(u, [])).toBeUndefined();
    expect(t.s.checkAccess({ user: "u", revision: u.revision - 1 }, [read("a/1")])).toBe("authOldRevision");
    expect(t.s.checkAccess(t.caller("ghost"), [read("a/1")])).toBe("permissionDenied");
    expect(
      t.s.checkAccess(t.caller("root"), [read("zzz", END), { key: b("q"), type: "write" }]),
    ).toBeUndefined();
    expect(t.s.checkAccess(u, [read("a/1")])).toBeUndefined();
    expect(t.s.checkAccess(u, [read("a/", "a0")])).toBeUndefined();
    expect(t.s.checkAccess(u, [read("a/", "a1")])).toBe("permissionDenied");
    expect(t.s.checkAccess(u, [read("a/", END)])).toBe("permissionDenied");
    expect(t.s.checkAccess(u, [{ key: b("a/1"), type: "write" }])).toBe("permissionDenied");
    expect(t.s.checkAccess(u, [{ key: b("w"), type: "write" }])).toBeUndefined();
    expect(t.s.checkAccess(u, [read("w")])).toBe("permissionDenied");
    expect(t.s.checkAdmin(u)).toBe("permissionDenied");
    expect(t.s.checkAdmin(t.caller("ghost"))).toBe("userNotFound");
    expect(t.s.checkAdmin(undefined)).toBe("userEmpty");
    expect(t.s.checkAdmin(t.caller("root"))).toBeUndefined();
    // A revoke takes effect at once, and bumps the revision.
    t.run({ type: "authRoleRevokePermission", role: "r", key: b("a/"), rangeEnd: b("a0") });
    expect(t.s.checkAccess(u, [read("a/1")])).toBe("authOldRevision");
    expect(t.s.checkAccess(t.caller("u"), [read("a/1")])).toBe("permissionDenied");
  });

  it("a user's permissions are the union over its roles, contiguous ranges joined", () => {
    const t = new Store();
    t.run({ type: "authRoleAdd", role: "r1" });
    t.run({ type: "authRoleAdd", role: "r2" });
    t.run({ type: "authRoleGrantPermission", role: "r1", permission: perm("readwrite", "a", "m") });
    t.run({ type: "authRoleGrantPermission", role: "r2", permission: perm("read", "m", END) });
    t.run({ type: "authUserAdd", user: "u", passwordHash: "h" });
    t.run({ type: "authUserGrantRole", user: "u", role: "r1" });
    t.enableWithRoot();
    expect(t.s.checkAccess(t.caller("u"), [{ key: b("b"), rangeEnd: END, type: "read" }])).toBe(
      "permissionDenied",
    );
    t.run({ type: "authUserGrantRole", user: "u", role: "r2" });
    expect(t.s.checkAccess(t.caller("u"), [{ key: b("b"), rangeEnd: END, type: "read" }])).toBeUndefined();
    expect(t.s.checkAccess(t.caller("u"), [{ key: b("b"), rangeEnd: END, type: "write" }])).toBe(
      "permissionDenied",
    );
  });
});

describe("AuthStore: tokens", () => {
  it("authenticate assigns <prefix>.<index>; not enabled, unknown, no-password users and a stale revision are refused", () => {
    const t = new Store();
    const auth = (user: string, authRevision = t.s.revision()): AuthCommand => ({
      type: "authenticate",
      user,
      tokenPrefix: PREFIX,
      authRevision,
    });
    expect(t.run(auth("root"))).toEqual({ ok: false, error: "authNotEnabled" });
    t.run({ type: "authUserAdd", user: "np" });
    t.enableWithRoot();
    expect(t.run(auth("ghost"))).toEqual({ ok: false, error: "authFailed" });
    expect(t.run(auth("np"))).toEqual({ ok: false, error: "authFailed" });
    expect(t.run(auth("root", t.s.revision() - 1))).toEqual({ ok: false, error: "authOldRevision" });
    expect(t.s.tokenCount()).toBe(0);
    const r = t.run(auth("root"));
    expect(r).toEqual({ ok: true, token: `${PREFIX}.${t.index}` });
    expect(t.s.tokenUser(`${PREFIX}.${t.index}`)).toBe("root");
    expect(t.s.tokensAfter(t.index - 1).map((x) => x.user)).toEqual(["root"]);
    expect(t.s.tokensAfter(t.index)).toEqual([]);
  });

  it("a user's tokens go with its deletion or new password, all of them with disable", () => {
    const t = new Store();
    t.run({ type: "authUserAdd", user: "u", passwordHash: "h" });
    t.run({ type: "authUserAdd", user: "v", passwordHash: "h" });
    t.enableWithRoot();
    const login = (user: string): string => {
      const r = t.run({ type: "authenticate", user, tokenPrefix: PREFIX, authRevision: t.s.revision() });
      if (!r.ok || r.token === undefined) throw new Error("no token");
      return r.token;
    };
    const [u, v, root] = [login("u"), login("v"), login("root")];
    t.run({ type: "authUserChangePassword", user: "u", passwordHash: "h2" });
    expect(t.s.tokenUser(u)).toBeUndefined();
    expect(t.s.tokenUser(v)).toBe("v");
    t.run({ type: "authUserDelete", user: "v" });
    expect(t.s.tokenUser(v)).toBeUndefined();
    t.run({ type: "authUserAdd", user: "v", passwordHash: "h" }); // the same name again: the old token stays dead
    expect(t.s.tokenUser(v)).toBeUndefined();
    expect(t.s.tokenUser(root)).toBe("root");
    t.run({ type: "authDisable" });
    expect(t.s.tokenCount()).toBe(0);
  });

  it("at most AUTH_TOKENS_MAX tokens: the oldest held goes; a restored store drops the same ones", () => {
    const t = new Store();
    t.run({ type: "authUserAdd", user: "u", passwordHash: "h" });
    t.run({ type: "authUserAdd", user: "v", passwordHash: "h" });
    t.enableWithRoot();
    const login = (user: string) =>
      t.run({ type: "authenticate", user, tokenPrefix: PREFIX, authRevision: t.s.revision() });
    for (let i = 0; i < AUTH_TOKENS_MAX; i++) login(i % 2 === 0 ? "u" : "v");
    // Dead tokens of u sit in the order: a restored copy (which holds none) must drop as the original does.
    t.run({ type: "authUserChangePassword", user: "u", passwordHash: "h2" });
    const copy = AuthStore.restore(JSON.parse(JSON.stringify(t.s.snapshot())));
    let index = t.index;
    for (let i = 0; i < AUTH_TOKENS_MAX; i++) {
      index++;
      t.index = index;
      const cmd: AuthCommand = {
        type: "authenticate",
        user: "v",
        tokenPrefix: PREFIX,
        authRevision: t.s.revision(),
      };
      expect(t.s.apply(cmd, index)).toEqual(copy.apply(cmd, index));
    }
    expect(t.s.tokenCount()).toBe(AUTH_TOKENS_MAX);
    expect(t.s.snapshot()).toEqual(copy.snapshot());
    expect(t.s.tokenUser(`${PREFIX}.${index - AUTH_TOKENS_MAX}`)).toBeUndefined();
    expect(t.s.tokenUser(`${PREFIX}.${index - AUTH_TOKENS_MAX + 1}`)).toBe("v");
  });
});

// ---------------------------------------------------------------------------
// Permission ranges against a dumb model.

/** Byte strings with +infinity (undefined), ordered bytewise. */
type Key = string | undefined;
const lt = (a: Key, c: Key): boolean => (a === undefined ? false : c === undefined ? true : a < c);
const le = (a: Key, c: Key): boolean => a === c || lt(a, c);

/**
 * The model: a permission is the set [begin, end) of keys; a range [k, e) is
 * covered iff every point where coverage could start to fail (k, and each
 * permission end inside [k, e)) lies in some permission. Keys are latin-1
 * strings (one char per byte), so JS order is byte order.
 */
function modelAllows(perms: readonly Permission[], check: AccessCheck): boolean {
  const str = (u: Uint8Array) => String.fromCharCode(...u);
  const ivs = perms
    .filter((p) => p.type === "readwrite" || p.type === check.type)
    .map((p) => {
      const begin = str(p.key);
      const end: Key =
        p.rangeEnd.length === 0 ? `${begin}\0` : str(p.rangeEnd) === "\0" ? undefined : str(p.rangeEnd);
      return { begin, end };
    });
  const holds = (x: string) => ivs.some((iv) => le(iv.begin, x) && lt(x, iv.end));
  const k = str(check.key);
  const re = check.rangeEnd ?? NONE;
  if (re.length === 0) return holds(k);
  const e: Key = str(re) === "\0" ? undefined : str(re);
  if (!lt(k, e)) return holds(k);
  const points = [
    k,
    ...ivs.map((iv) => iv.end).filter((x): x is string => x !== undefined && le(k, x) && lt(x, e)),
  ];
  return points.every(holds);
}

const keyArb = fc.string({ unit: fc.constantFrom("a", "b", "c"), minLength: 1, maxLength: 3 });
const permArb: fc.Arbitrary<Permission> = fc
  .tuple(fc.constantFrom<PermissionType>("read", "write", "readwrite"), keyArb, fc.nat(3), keyArb)
  .map(([type, key, shape, other]) => {
    // shape: 0 one key, 1 to the end, 2-3 a range (the larger of two keys as its end, when different)
    if (shape === 0) return perm(type, key);
    if (shape === 1) return perm(type, key, END);
    const [lo, hi] = key < other ? [key, other] : [other, key];
    return lo === hi ? perm(type, lo) : perm(type, lo, hi);
  });
const checkArb: fc.Arbitrary<AccessCheck> = fc
  .tuple(fc.constantFrom<"read" | "write">("read", "write"), keyArb, fc.nat(3), keyArb)
  .map(([type, key, shape, other]) => {
    if (shape === 0) return { key: b(key), type };
    if (shape === 1) return { key: b(key), rangeEnd: END, type };
    return { key: b(key), rangeEnd: b(other), type }; // any order: an empty range is judged by its key
  });

describe("permission ranges vs a model", () => {
  it("permissionsAllow agrees with the model", () => {
    fc.assert(
      fc.property(fc.array(permArb, { maxLength: 6 }), checkArb, (perms, check) => {
        expect(permissionsAllow(perms, check)).toBe(modelAllows(perms, check));
      }),
      { numRuns: 3000 },
    );
  });

  it("the store (permissions spread over roles, root aside) agrees with the model", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(2), permArb), { maxLength: 8 }),
        fc.array(checkArb, { minLength: 1, maxLength: 3 }),
        (grants, checks) => {
          const t = new Store();
          for (const r of ["r0", "r1", "r2"]) t.run({ type: "authRoleAdd", role: r });
          for (const [r, p] of grants)
            t.run({ type: "authRoleGrantPermission", role: `r${r}`, permission: p });
          t.run({ type: "authUserAdd", user: "u", passwordHash: "h" });
          for (const r of ["r0", "r2"]) t.run({ type: "authUserGrantRole", user: "u", role: r });
          t.enableWithRoot();
          // A grant with the same key and range end as an earlier one in its role replaces it (etcd).
          const byRole = new Map<string, Permission>();
          for (const [r, p] of grants) byRole.set(`${r}|${p.key.join(",")}|${p.rangeEnd.join(",")}`, p);
          const held = [...byRole].filter(([k]) => !k.startsWith("1|")).map(([, p]) => p);
          const want = checks.every((c) => modelAllows(held, c));
          expect(t.s.checkAccess(t.caller("u"), checks)).toBe(want ? undefined : "permissionDenied");
        },
      ),
      { numRuns: 500 },
    );
  });

  it("known cases: adjacent ranges join, a gap splits, one-key permissions hold only their key", () => {
    const check = (key: string, rangeEnd?: string | Uint8Array): AccessCheck => ({
      key: b(key),
      rangeEnd: typeof rangeEnd === "string" ? b(rangeEnd) : rangeEnd,
      type: "read",
    });
    const joined = [perm("read", "a", "c"), perm("read", "c", END)];
    expect(permissionsAllow(joined, check("b", END))).toBe(true);
    const gap = [perm("read", "a", "c"), perm("read", "d", END)];
    expect(permissionsAllow(gap, check("b", END))).toBe(false);
    expect(permissionsAllow(gap, check("d", "z"))).toBe(true);
    const one = [perm("read", "a")];
    expect(permissionsAllow(one, check("a"))).toBe(true);
    expect(permissionsAllow(one, check("a", "a\0"))).toBe(true);
    expect(permissionsAllow(one, check("a", "b"))).toBe(false);
    expect(permissionsAllow(one, check("ab"))).toBe(false);
  });
});

// ---------------------------------------------------------------------------
// In the state machine.

class Machine {
  m = new StateMachine();
  index = 0;
  run(cmd: Command) {
    return this.m.apply(++this.index, encodeCommand(cmd)).result;
  }
  caller(user: string): CommandAuth {
    return { user, revision: this.m.authStore().revision() };
  }
  /** root, a role `r` with readwrite on prefix `a/`, user `u` with `r`; auth on. */
  setUp(): void {
    for (const c of [
      { type: "authUserAdd", user: "root", passwordHash: "h" },
      { type: "authUserGrantRole", user: "root", role: "root" },
      { type: "authRoleAdd", role: "r" },
      { type: "authRoleGrantPermission", role: "r", permission: perm("readwrite", "a/", "a0") },
      { type: "authUserAdd", user: "u", passwordHash: "h" },
      { type: "authUserGrantRole", user: "u", role: "r" },
      { type: "authEnable" },
    ] satisfies AuthCommand[])
      expect(this.run(c).kind).toBe("auth");
  }
}

const putCmd = (key: string, auth?: CommandAuth, extra: Record<string, unknown> = {}): Command => ({
  type: "put",
  request: { key: b(key), value: b("v"), ...extra },
  auth,
});
const failed = (error: string) => expect.objectContaining({ kind: "failed", error });

describe("StateMachine with auth", () => {
  it("writes are checked at apply for the caller they carry", () => {
    const h = new Machine();
    h.setUp();
    expect(h.run(putCmd("a/1", h.caller("u"))).kind).toBe("put");
    expect(h.run(putCmd("b", h.caller("u")))).toEqual(failed("permissionDenied"));
    expect(h.run(putCmd("a/1"))).toEqual(failed("userEmpty"));
    expect(h.run(putCmd("b", h.caller("root"))).kind).toBe("put");
    expect(
      h.run({ type: "deleteRange", request: { key: b("a/"), rangeEnd: b("a0") }, auth: h.caller("u") }).kind,
    ).toBe("deleteRange");
    expect(
      h.run({ type: "deleteRange", request: { key: b("a/"), rangeEnd: END }, auth: h.caller("u") }),
    ).toEqual(failed("permissionDenied"));
    // A denied write changes nothing.
    expect(h.m.range({ key: b("b") }).ok && h.m.range({ key: b("b") })).toMatchObject({ count: 1 });
  });

  it("a permission revoked after the caller was identified: the write is refused (etcd's ErrAuthOldRevision)", () => {
    const h = new Machine();
    h.setUp();
    const stamp = h.caller("u"); // the API layer identified u here
    const revoke: Command = {
      type: "authRoleRevokePermission",
      role: "r",
      key: b("a/"),
      rangeEnd: b("a0"),
      auth: h.caller("root"),
    };
    expect(h.run(revoke).kind).toBe("auth");
    expect(h.run(putCmd("a/1", stamp))).toEqual(failed("authOldRevision"));
    expect(h.m.range({ key: b("a/1") })).toMatchObject({ ok: true, count: 0 });
    expect(h.run(putCmd("a/1", h.caller("u")))).toEqual(failed("permissionDenied"));
  });

  it("txn: every compare and op, nested txns included; puts to a lease need write access to its keys", () => {
    const h = new Machine();
    h.setUp();
    const u = h.caller("u");
    const nested: Command = {
      type: "txn",
      auth: u,
      request: {
        success: [
          { type: "txn", request: { success: [{ type: "put", request: { key: b("b"), value: b("x") } }] } },
        ],
      },
    };
    expect(h.run(nested)).toEqual(failed("permissionDenied"));
    const compare: Command = {
      type: "txn",
      auth: u,
      request: { compare: [{ key: b("b"), result: "equal", target: "version", version: 0 }] },
    };
    expect(h.run(compare)).toEqual(failed("permissionDenied"));
    const ok: Command = {
      type: "txn",
      auth: u,
      request: {
        compare: [{ key: b("a/x"), result: "equal", target: "version", version: 0 }],
        success: [{ type: "range", request: { key: b("a/"), rangeEnd: b("a0") } }],
      },
    };
    expect(h.run(ok).kind).toBe("txn");
    // root attaches a key u may not write to lease 5: u may neither use the lease nor revoke it.
    expect(h.run({ type: "leaseGrant", id: leaseId(5n), ttlSeconds: 60, auth: h.caller("root") }).kind).toBe(
      "leaseGrant",
    );
    expect(h.run(putCmd("b", h.caller("root"), { lease: leaseId(5n) })).kind).toBe("put");
    expect(h.run(putCmd("a/1", h.caller("u"), { lease: leaseId(5n) }))).toEqual(failed("permissionDenied"));
    expect(h.run({ type: "leaseRevoke", id: leaseId(5n), auth: h.caller("u") })).toEqual(
      failed("permissionDenied"),
    );
    expect(h.run({ type: "leaseRevoke", id: leaseId(5n) })).toEqual(failed("userEmpty"));
    // The leader's expiry of an incarnation carries no caller and is never refused.
    const grantIndex = h.m.lease(leaseId(5n))?.grantIndex ?? 0;
    expect(h.run({ type: "leaseRevoke", id: leaseId(5n), grantIndex }).kind).toBe("leaseRevoke");
  });

  it("compaction and auth management need root; lease grants a caller; prev_kv needs read", () => {
    const h = new Machine();
    h.setUp();
    h.run(putCmd("a/1", h.caller("root")));
    expect(h.run({ type: "compact", revision: h.m.currentRevision(), auth: h.caller("u") })).toEqual(
      failed("permissionDenied"),
    );
    expect(h.run({ type: "compact", revision: h.m.currentRevision(), auth: h.caller("root") }).kind).toBe(
      "compact",
    );
    expect(h.run({ type: "authRoleAdd", role: "x", auth: h.caller("u") })).toEqual(
      failed("permissionDenied"),
    );
    expect(h.run({ type: "authRoleAdd", role: "x" })).toEqual(failed("userEmpty"));
    expect(h.run({ type: "authDisable", auth: h.caller("u") })).toEqual(failed("permissionDenied"));
    expect(h.run({ type: "leaseGrant", id: leaseId(9n), ttlSeconds: 60 })).toEqual(failed("userEmpty"));
    expect(h.run({ type: "leaseGrant", id: leaseId(9n), ttlSeconds: 60, auth: h.caller("u") }).kind).toBe(
      "leaseGrant",
    );
    // write-only on w: a put is fine, a put asking for the previous value is not.
    h.run({
      type: "authRoleGrantPermission",
      role: "r",
      permission: perm("write", "w"),
      auth: h.caller("root"),
    });
    expect(h.run(putCmd("w", h.caller("u"))).kind).toBe("put");
    expect(h.run(putCmd("w", h.caller("u"), { prevKv: true }))).toEqual(failed("permissionDenied"));
    expect(h.run({ type: "authDisable", auth: h.caller("root") }).kind).toBe("auth");
    expect(h.run(putCmd("anything")).kind).toBe("put");
  });

  it("the auth state is in snapshots; a snapshot without it restores with auth off", () => {
    const h = new Machine();
    h.setUp();
    const tok = h.run({
      type: "authenticate",
      user: "u",
      tokenPrefix: PREFIX,
      authRevision: h.caller("u").revision,
    });
    expect(tok).toMatchObject({ kind: "auth", token: `${PREFIX}.${h.index}` });
    const restored = StateMachine.restore(h.m.snapshot());
    expect(restored.snapshot()).toEqual(h.m.snapshot());
    const a = restored.authStore();
    expect(a.isEnabled()).toBe(true);
    expect(a.userNames()).toEqual(["root", "u"]);
    expect(a.tokenUser(`${PREFIX}.${h.index}`)).toBe("u");
    expect(a.checkAccess(h.caller("u"), [{ key: b("a/1"), type: "write" }])).toBeUndefined();
    // The password is a hash the API made: the snapshot holds exactly what the command carried.
    // A format-1 (JSON) snapshot from before auth existed.
    const old = JSON.parse(new TextDecoder().decode(StateMachine.snapshotToJson(h.m.snapshot())));
    delete old.auth;
    const before = StateMachine.restore(te.encode(JSON.stringify(old)));
    expect(before.authStore().isEnabled()).toBe(false);
    expect(before.authStore().userNames()).toEqual([]);
    expect(before.authStore().revision()).toBe(FIRST_AUTH_REVISION);
  });

  it("a backup (Maintenance.Snapshot) holds no tokens; the members' own snapshots keep them", () => {
    const h = new Machine();
    h.setUp();
    h.run({ type: "authenticate", user: "u", tokenPrefix: PREFIX, authRevision: h.caller("u").revision });
    const token = `${PREFIX}.${h.index}`;
    expect(new TextDecoder().decode(h.m.backup())).not.toContain(PREFIX);
    expect(StateMachine.restore(h.m.backup()).authStore().tokenUser(token)).toBeUndefined();
    expect(StateMachine.restore(h.m.backup()).authStore().userNames()).toEqual(["root", "u"]);
    expect(StateMachine.restore(h.m.snapshot()).authStore().tokenUser(token)).toBe("u");
  });

  it("a snapshot restored as a new cluster keeps users and roles, not the old log's tokens", () => {
    const h = new Machine();
    h.setUp();
    h.run({ type: "authenticate", user: "u", tokenPrefix: PREFIX, authRevision: h.caller("u").revision });
    expect(h.m.authStore().tokenCount()).toBe(1);
    const founders = [
      {
        kind: "addVoter" as const,
        member: memberId(1),
        context: encodeMemberContext({ name: "m1", peerUrls: ["http://h:1"] }),
      },
    ];
    const fresh = StateMachine.restoreAsNewCluster(h.m.snapshot(), founders).authStore();
    expect(fresh.tokenCount()).toBe(0);
    expect(fresh.isEnabled()).toBe(true);
    expect(fresh.userNames()).toEqual(["root", "u"]);
    expect(fresh.role("r")?.permissions).toEqual([perm("readwrite", "a/", "a0")]);
  });
});

describe("auth commands: codec", () => {
  const cmds: Command[] = [
    { type: "authEnable" },
    { type: "authDisable", auth: { user: "root", revision: 3 }, session: { clientId: "c", seq: 2 } },
    { type: "authenticate", user: "u", tokenPrefix: PREFIX, authRevision: 7 },
    {
      type: "authUserAdd",
      user: "u",
      passwordHash: "scrypt$14$8$1$c2FsdA==$a2V5",
      auth: { user: "root", revision: 1 },
    },
    { type: "authUserAdd", user: "np" },
    { type: "authUserDelete", user: "u" },
    { type: "authUserChangePassword", user: "u", passwordHash: "scrypt$1$1$1$AA==$AA==" },
    { type: "authUserGrantRole", user: "u", role: "r" },
    { type: "authUserRevokeRole", user: "u", role: "r" },
    { type: "authRoleAdd", role: "r" },
    { type: "authRoleDelete", role: "r" },
    { type: "authRoleGrantPermission", role: "r", permission: perm("readwrite", "a", END) },
    { type: "authRoleGrantPermission", role: "r" },
    { type: "authRoleRevokePermission", role: "r", key: b("a"), rangeEnd: NONE },
    { type: "put", request: { key: b("k"), value: b("v") }, auth: { user: "u", revision: 4 } },
    { type: "leaseRevoke", id: leaseId(3n), auth: { user: "u", revision: 4 } },
  ];

  it("round-trips", () => {
    for (const c of cmds) expect(decodeCommand(encodeCommand(c))).toEqual(c);
  });

  it("refuses malformed auth fields with a CommandDecodeError naming them", () => {
    const bad = (json: unknown, path: string) => {
      const r = tryDecodeCommand(te.encode(JSON.stringify(json)));
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.error).toBeInstanceOf(CommandDecodeError);
        expect(r.error.path).toBe(path);
      }
    };
    bad({ v: 1, type: "authenticate", user: "u", tokenPrefix: "short", authRevision: 1 }, "$.tokenPrefix");
    bad({ v: 1, type: "authenticate", user: "u", tokenPrefix: PREFIX, authRevision: 0 }, "$.authRevision");
    bad(
      {
        v: 1,
        type: "authenticate",
        user: "u",
        tokenPrefix: PREFIX,
        authRevision: 1,
        auth: { user: "x", revision: 1 },
      },
      "$.auth",
    );
    bad({ v: 1, type: "authUserAdd", user: "u", passwordHash: "pass word" }, "$.passwordHash");
    bad({ v: 1, type: "authUserAdd", user: 5 }, "$.user");
    bad(
      { v: 1, type: "put", request: { key: "aw==", value: "" }, auth: { user: "", revision: 1 } },
      "$.auth.user",
    );
    bad(
      { v: 1, type: "put", request: { key: "aw==", value: "" }, auth: { user: "u", revision: 1, x: 1 } },
      "$.auth.x",
    );
    bad(
      {
        v: 1,
        type: "authRoleGrantPermission",
        role: "r",
        permission: { type: "all", key: "", rangeEnd: "" },
      },
      "$.permission.type",
    );
    bad({ v: 1, type: "leaseCheckpoint", checkpoints: [], auth: { user: "u", revision: 1 } }, "$.auth");
  });
});
