/**
 * The replicated auth store (etcd v3 auth, release-3.4 auth/store.go and
 * auth/range_perm_cache.go, written from them): whether auth is enabled, the
 * users with their password hashes and roles, the roles with their key
 * permissions, the auth revision, and the simple tokens handed out. It is
 * part of the state machine (machine.ts): every replica applies the same auth
 * commands at the same indexes, so every member answers the same about who
 * may do what.
 *
 * Contract:
 * - Deterministic and pure: no clock, no randomness. Password hashes are
 *   computed by the API layer (src/api/auth.ts) and arrive as opaque text;
 *   token prefixes are random text made by the API layer too. A token is
 *   `<prefix>.<index>` (etcd's simple token), unique because the index is.
 * - The auth revision starts at 1 (etcd commits revision 1 when it creates
 *   the store) and grows by one with every change of users, roles or
 *   permissions and with AuthDisable; AuthEnable does not change it (etcd).
 *   A check made for a caller identified at an older revision fails with
 *   `authOldRevision` (etcd's ErrAuthOldRevision).
 * - Mutations follow etcd's rules and errors: `root` may not be deleted, nor
 *   lose the `root` role, while auth is enabled; the `root` role may not be
 *   deleted while enabled; enabling needs a `root` user that has the `root`
 *   role (the role need not exist as a role: etcd grants it by name).
 * - Permissions (etcd's intervals over BytesAffineComparable, where the empty
 *   string sorts after every key): a permission with an empty range_end is
 *   the one key; range_end "\0" is every key from `key` on; otherwise
 *   [key, range_end). A check of one key passes if some permission of the
 *   right type holds the key; a check of a range passes if the user's
 *   permissions of that type cover the whole range without a gap (etcd's
 *   IntervalTree.Contains). A range whose end is not after its key covers
 *   no key: it passes exactly when its first key would.
 * - Users with the `root` role pass every key check.
 * - Tokens: at most AUTH_TOKENS_MAX are kept; assigning one more drops the
 *   oldest (its client re-authenticates: clientv3 does on "invalid auth
 *   token"). A user's tokens go when the user is deleted or its password
 *   changes, every token when auth is disabled (etcd's invalidateUser and
 *   disable). Their time to live is the API layer's (a member-local clock,
 *   as etcd's --auth-token-ttl).
 * - Snapshot: canonical JSON-ready data (users and roles by name, tokens in
 *   assignment order); restore gives a store no observer can tell apart.
 */

import { assert, assertNever } from "../raft/index.ts";
import { base64ToBytes, bytesToBase64, compareBytes, isRangeEndToEnd } from "./bytes.ts";
import type { AuthCommand, CommandAuth } from "./command.ts";
import type { DeleteRangeRequest, KeyRange, PutRequest, RequestOp, TxnRequest } from "./mvcc.ts";
import type { LeaseId } from "./types.ts";

/** The name of the user and of the role with every right (etcd's rootUser / rootRole). */
export const ROOT_USER = "root";
export const ROOT_ROLE = "root";
/** Most tokens kept; assigning one more drops the oldest. */
export const AUTH_TOKENS_MAX = 16_384;
/** Letters in a simple token's random prefix (etcd's defaultSimpleTokenLength). */
export const AUTH_TOKEN_PREFIX_LENGTH = 16;
/** The first auth revision (etcd commits 1 when the store is created). */
export const FIRST_AUTH_REVISION = 1;

/** etcd authpb.Permission.Type. */
export type PermissionType = "read" | "write" | "readwrite";

/** One key permission of a role (etcd authpb.Permission). */
export interface Permission {
  readonly type: PermissionType;
  /** Never empty. */
  readonly key: Uint8Array;
  /** Empty: the key alone; "\0": every key from `key` on; else the range end (exclusive). */
  readonly rangeEnd: Uint8Array;
}

/** A user as the store keeps it (etcd authpb.User). */
export interface AuthUser {
  readonly name: string;
  /** Sorted (etcd keeps them sorted), no duplicates. */
  readonly roles: readonly string[];
  /** The API layer's hash; undefined for a user added with no_password. */
  readonly passwordHash: string | undefined;
  /** Added with no_password: never authenticates with a password. */
  readonly noPassword: boolean;
}

/** A role as the store keeps it (etcd authpb.Role). */
export interface AuthRole {
  readonly name: string;
  /** Sorted by key (stable: equal keys keep the order they were granted in). */
  readonly permissions: readonly Permission[];
}

/** What one request needs: read or write access to a key or range (etcd IsRangePermitted / IsPutPermitted). */
export interface AccessCheck {
  readonly key: Uint8Array;
  /** Empty or absent: the key alone; "\0": every key from `key` on. */
  readonly rangeEnd?: Uint8Array | undefined;
  readonly type: "read" | "write";
}

/**
 * Expected failures of auth checks and auth commands, each etcd's error of
 * the same name (auth/store.go; src/api maps them to the catalogue).
 */
export type AuthError =
  | "userEmpty"
  | "userNotFound"
  | "userAlreadyExist"
  | "roleEmpty"
  | "roleNotFound"
  | "roleAlreadyExist"
  | "rootUserNotExist"
  | "rootRoleNotExist"
  | "authFailed"
  | "authNotEnabled"
  | "authOldRevision"
  | "permissionDenied"
  | "roleNotGranted"
  | "permissionNotGranted"
  | "permissionNotGiven"
  | "invalidAuthMgmt";

/** The outcome of an auth command. */
export type AuthApplyOutcome =
  | { readonly ok: true; readonly token?: string | undefined }
  | { readonly ok: false; readonly error: AuthError };

/** A token as the store keeps it. */
export interface AuthToken {
  readonly token: string;
  readonly user: string;
  /** The index of the entry that assigned it. */
  readonly index: number;
}

/** The snapshot's JSON shape. */
export interface AuthStoreSnapshot {
  readonly enabled: boolean;
  readonly revision: number;
  readonly users: readonly {
    readonly name: string;
    readonly roles: readonly string[];
    readonly passwordHash?: string;
    readonly noPassword: boolean;
  }[];
  readonly roles: readonly {
    readonly name: string;
    readonly permissions: readonly {
      readonly type: PermissionType;
      readonly key: string;
      readonly rangeEnd: string;
    }[];
  }[];
  readonly tokens: readonly AuthToken[];
}

/**
 * Code point order of two strings, which is the bytewise order of their UTF-8
 * (etcd sorts names as bytes). JS `<` compares UTF-16 units, which differs
 * for characters above U+FFFF against U+E000..U+FFFF.
 */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

// ---------------------------------------------------------------------------
// Intervals over etcd's BytesAffineComparable: the empty string is +infinity.

/** [begin, end) with affine bytes (empty = +infinity). */
interface Interval {
  readonly begin: Uint8Array;
  readonly end: Uint8Array;
}

const INFINITY = new Uint8Array(0);

/** etcd adt.BytesAffineComparable.Compare: the empty string sorts after everything. */
function affineCompare(a: Uint8Array, b: Uint8Array): number {
  if (a.length === 0) return b.length === 0 ? 0 : 1;
  if (b.length === 0) return -1;
  return compareBytes(a, b);
}

/** The key followed by a zero byte: the end of the point interval [key, key\0). */
function pointEnd(key: Uint8Array): Uint8Array {
  const end = new Uint8Array(key.length + 1);
  end.set(key);
  return end;
}

/** The interval a permission covers (etcd getMergedPerms). */
function permissionInterval(p: Permission): Interval {
  if (p.rangeEnd.length === 0) return { begin: p.key, end: pointEnd(p.key) };
  return { begin: p.key, end: isRangeEndToEnd(p.rangeEnd) ? INFINITY : p.rangeEnd };
}

/** etcd Interval.Compare == 0: whether `q` and `iv` overlap (for a non-empty q, the usual test). */
function overlaps(q: Interval, iv: Interval): boolean {
  const leftOf = affineCompare(q.begin, iv.begin) < 0 && affineCompare(q.end, iv.begin) <= 0;
  return !leftOf && affineCompare(q.begin, iv.end) < 0;
}

/** Whether `sorted` (by begin) has one interval holding the point `key`. */
function holdsPoint(sorted: readonly Interval[], key: Uint8Array): boolean {
  for (const iv of sorted) {
    if (affineCompare(iv.begin, key) > 0) return false;
    if (affineCompare(key, iv.end) < 0) return true;
  }
  return false;
}

/**
 * Whether `sorted` (by begin) covers [begin, end) without a gap (etcd
 * IntervalTree.Contains: the intervals that overlap it, in order, must be
 * contiguous, start at or before `begin` and reach `end`).
 */
function coversRange(sorted: readonly Interval[], q: Interval): boolean {
  let minBegin: Uint8Array | undefined;
  let maxEnd: Uint8Array = INFINITY;
  for (const iv of sorted) {
    if (!overlaps(q, iv)) continue;
    if (minBegin === undefined) {
      minBegin = iv.begin;
      maxEnd = iv.end;
      continue;
    }
    if (affineCompare(maxEnd, iv.begin) < 0) return false;
    if (affineCompare(iv.end, maxEnd) > 0) maxEnd = iv.end;
  }
  return minBegin !== undefined && affineCompare(maxEnd, q.end) >= 0 && affineCompare(minBegin, q.begin) <= 0;
}

/** Whether intervals (sorted by begin) allow `check` (etcd isRangeOpPermitted). */
function intervalsAllow(
  sorted: readonly Interval[],
  key: Uint8Array,
  rangeEnd: Uint8Array | undefined,
): boolean {
  if (rangeEnd === undefined || rangeEnd.length === 0) return holdsPoint(sorted, key);
  const end = isRangeEndToEnd(rangeEnd) ? INFINITY : rangeEnd;
  // A range that ends at or before its key selects nothing: judge it by its first key.
  if (affineCompare(end, key) <= 0) return holdsPoint(sorted, key);
  return coversRange(sorted, { begin: key, end });
}

/**
 * A permission range etcd accepts (release-3.4 isValidPermissionRange): a
 * non-empty key, and no range end, a range end after the key, or "\0".
 */
export function isValidPermissionRange(key: Uint8Array, rangeEnd: Uint8Array): boolean {
  if (key.length === 0) return false;
  if (rangeEnd.length === 0) return true;
  return affineCompare(key, rangeEnd) < 0 || isRangeEndToEnd(rangeEnd);
}

/** Whether a single key or range is allowed by `permissions` alone (no root rule): the store's rule, exported for tests. */
export function permissionsAllow(permissions: readonly Permission[], check: AccessCheck): boolean {
  const ivs = permissions.filter((p) => allowsType(p.type, check.type)).map(permissionInterval);
  ivs.sort(byBegin);
  return intervalsAllow(ivs, check.key, check.rangeEnd);
}

function allowsType(p: PermissionType, need: "read" | "write"): boolean {
  return p === "readwrite" || p === need;
}

function byBegin(a: Interval, b: Interval): number {
  return affineCompare(a.begin, b.begin) || affineCompare(a.end, b.end);
}

// ---------------------------------------------------------------------------
// What each request needs (etcd apply_auth.go, release-3.4).

/** The keys attached to a lease (none for an unknown lease, or when the caller is root). */
export type LeaseKeys = (id: LeaseId) => readonly Uint8Array[];

/** etcd Range: read access to [key, range_end). */
export function rangeChecks(r: KeyRange): AccessCheck[] {
  return [{ key: r.key, rangeEnd: r.rangeEnd, type: "read" }];
}

/**
 * etcd checkPutAuth: write access to the key; write access to every key
 * already attached to the lease it names (a user may not attach keys to a
 * lease it could not revoke); read access to the key with prev_kv.
 */
export function putChecks(r: PutRequest, leaseKeys: LeaseKeys): AccessCheck[] {
  const out: AccessCheck[] = [{ key: r.key, type: "write" }];
  if (r.lease !== undefined && r.lease !== 0n)
    for (const key of leaseKeys(r.lease)) out.push({ key, type: "write" });
  if (r.prevKv === true) out.push({ key: r.key, type: "read" });
  return out;
}

/** etcd DeleteRange: write access to the range; read access too with prev_kv. */
export function deleteChecks(r: DeleteRangeRequest): AccessCheck[] {
  const out: AccessCheck[] = [{ key: r.key, rangeEnd: r.rangeEnd, type: "write" }];
  if (r.prevKv === true) out.push({ key: r.key, rangeEnd: r.rangeEnd, type: "read" });
  return out;
}

/** etcd checkTxnAuth: read access for every compare, and every op of both branches, nested txns included. */
export function txnChecks(r: TxnRequest, leaseKeys: LeaseKeys): AccessCheck[] {
  const out: AccessCheck[] = [];
  const visit = (t: TxnRequest): void => {
    for (const c of t.compare ?? []) out.push({ key: c.key, rangeEnd: c.rangeEnd, type: "read" });
    for (const op of [...(t.success ?? []), ...(t.failure ?? [])]) opChecks(op);
  };
  const opChecks = (op: RequestOp): void => {
    switch (op.type) {
      case "range":
        out.push(...rangeChecks(op.request));
        return;
      case "put":
        out.push(...putChecks(op.request, leaseKeys));
        return;
      case "deleteRange":
        out.push(...deleteChecks(op.request));
        return;
      case "txn":
        visit(op.request);
        return;
      default:
        assertNever(op, "request op");
    }
  };
  visit(r);
  return out;
}

/** etcd checkLeasePuts (LeaseRevoke, and keepalives since v3.4.2x): write access to every key of the lease. */
export function leaseWriteChecks(keys: readonly Uint8Array[]): AccessCheck[] {
  return keys.map((key) => ({ key, type: "write" }));
}

/** etcd checkLeaseTimeToLive / checkLeaseLeases: read access to every key of the lease(s). */
export function leaseReadChecks(keys: readonly Uint8Array[]): AccessCheck[] {
  return keys.map((key) => ({ key, type: "read" }));
}

// ---------------------------------------------------------------------------
// The store.

/** What the API layer may read of the store (never mutate it: only apply does). */
export type AuthView = Pick<
  AuthStore,
  | "isEnabled"
  | "revision"
  | "user"
  | "role"
  | "userNames"
  | "roleNames"
  | "hasRole"
  | "tokenUser"
  | "tokensAfter"
  | "tokenCount"
  | "checkAccess"
  | "checkAdmin"
  | "isAdmin"
>;

interface UserRecord {
  readonly name: string;
  roles: string[];
  passwordHash: string | undefined;
  readonly noPassword: boolean;
}

interface RoleRecord {
  readonly name: string;
  permissions: Permission[];
}

/** A user's permissions merged over its roles, by type, each sorted by begin. */
interface MergedPermissions {
  readonly read: readonly Interval[];
  readonly write: readonly Interval[];
}

/** The replicated auth state. See the file header. */
export class AuthStore {
  private enabled = false;
  private rev = FIRST_AUTH_REVISION;
  private readonly users = new Map<string, UserRecord>();
  private readonly roles = new Map<string, RoleRecord>();
  /** token -> its record. Invariant: every one is in `tokenOrder`. */
  private readonly tokens = new Map<string, AuthToken>();
  /** Tokens in assignment (index) order, dropped ones included until they reach the front. */
  private tokenOrder: AuthToken[] = [];
  private tokenHead = 0;
  /** Per user, derived from users and roles; emptied by every change. */
  private readonly merged = new Map<string, MergedPermissions>();

  // -- reads -----------------------------------------------------------------

  isEnabled(): boolean {
    return this.enabled;
  }

  /** The auth revision (see the header). */
  revision(): number {
    return this.rev;
  }

  user(name: string): AuthUser | undefined {
    const u = this.users.get(name);
    return u === undefined
      ? undefined
      : { name: u.name, roles: [...u.roles], passwordHash: u.passwordHash, noPassword: u.noPassword };
  }

  role(name: string): AuthRole | undefined {
    const r = this.roles.get(name);
    return r === undefined ? undefined : { name: r.name, permissions: [...r.permissions] };
  }

  /** Every user name, in etcd's (bytewise) order. */
  userNames(): string[] {
    return [...this.users.keys()].sort(compareNames);
  }

  /** Every role name, in etcd's (bytewise) order. */
  roleNames(): string[] {
    return [...this.roles.keys()].sort(compareNames);
  }

  /** Whether `user` exists and has `role` (etcd HasRole). */
  hasRole(user: string, role: string): boolean {
    return this.users.get(user)?.roles.includes(role) ?? false;
  }

  /** The user a token was assigned to, if the store still holds it. */
  tokenUser(token: string): string | undefined {
    return this.tokens.get(token)?.user;
  }

  /** The tokens still held that were assigned after entry `index`, in order. */
  tokensAfter(index: number): AuthToken[] {
    const out: AuthToken[] = [];
    for (let i = this.tokenOrder.length - 1; i >= this.tokenHead; i--) {
      const t = this.tokenOrder[i]!;
      if (t.index <= index) break;
      if (this.tokens.get(t.token) === t) out.push(t);
    }
    return out.reverse();
  }

  /** The number of tokens held. */
  tokenCount(): number {
    return this.tokens.size;
  }

  // -- checks ------------------------------------------------------------------

  /**
   * etcd isOpPermitted for every check: undefined when allowed (or auth is
   * off); else the first failure: userEmpty without a caller, authOldRevision
   * when the caller was identified at an older revision, permissionDenied.
   */
  checkAccess(caller: CommandAuth | undefined, checks: readonly AccessCheck[]): AuthError | undefined {
    if (!this.enabled) return undefined;
    if (caller === undefined || caller.user === "") return "userEmpty";
    if (checks.length === 0) return undefined;
    if (caller.revision < this.rev) return "authOldRevision";
    const user = this.users.get(caller.user);
    if (user === undefined) return "permissionDenied";
    if (user.roles.includes(ROOT_ROLE)) return undefined;
    const merged = this.mergedOf(user);
    for (const c of checks) {
      if (!intervalsAllow(c.type === "read" ? merged.read : merged.write, c.key, c.rangeEnd))
        return "permissionDenied";
    }
    return undefined;
  }

  /** etcd IsAdminPermitted: the caller has the root role (or auth is off). */
  checkAdmin(caller: CommandAuth | undefined): AuthError | undefined {
    if (!this.enabled) return undefined;
    if (caller === undefined || caller.user === "") return "userEmpty";
    const user = this.users.get(caller.user);
    if (user === undefined) return "userNotFound";
    return user.roles.includes(ROOT_ROLE) ? undefined : "permissionDenied";
  }

  /** Whether `caller` is root (auth on), without an error. */
  isAdmin(caller: CommandAuth | undefined): boolean {
    return this.enabled && this.checkAdmin(caller) === undefined;
  }

  private mergedOf(user: UserRecord): MergedPermissions {
    const cached = this.merged.get(user.name);
    if (cached !== undefined) return cached;
    const read: Interval[] = [];
    const write: Interval[] = [];
    for (const roleName of user.roles) {
      const role = this.roles.get(roleName);
      if (role === undefined) continue;
      for (const p of role.permissions) {
        const iv = permissionInterval(p);
        if (allowsType(p.type, "read")) read.push(iv);
        if (allowsType(p.type, "write")) write.push(iv);
      }
    }
    read.sort(byBegin);
    write.sort(byBegin);
    const m = { read, write };
    this.merged.set(user.name, m);
    return m;
  }

  // -- commands ----------------------------------------------------------------

  /** Applies one auth command (the caller's rights were checked by the machine). */
  apply(cmd: AuthCommand, index: number): AuthApplyOutcome {
    switch (cmd.type) {
      case "authEnable":
        return this.enable();
      case "authDisable":
        this.disable();
        return { ok: true };
      case "authenticate":
        return this.authenticate(cmd.user, cmd.tokenPrefix, cmd.authRevision, index);
      case "authUserAdd":
        return this.userAdd(cmd.user, cmd.passwordHash);
      case "authUserDelete":
        return this.userDelete(cmd.user);
      case "authUserChangePassword":
        return this.userChangePassword(cmd.user, cmd.passwordHash);
      case "authUserGrantRole":
        return this.userGrantRole(cmd.user, cmd.role);
      case "authUserRevokeRole":
        return this.userRevokeRole(cmd.user, cmd.role);
      case "authRoleAdd":
        return this.roleAdd(cmd.role);
      case "authRoleDelete":
        return this.roleDelete(cmd.role);
      case "authRoleGrantPermission":
        return this.roleGrantPermission(cmd.role, cmd.permission);
      case "authRoleRevokePermission":
        return this.roleRevokePermission(cmd.role, cmd.key, cmd.rangeEnd);
      default:
        return assertNever(cmd, "auth command");
    }
  }

  private commit(): AuthApplyOutcome {
    this.rev++;
    this.merged.clear();
    return { ok: true };
  }

  private enable(): AuthApplyOutcome {
    if (this.enabled) return { ok: true };
    const root = this.users.get(ROOT_USER);
    if (root === undefined) return { ok: false, error: "rootUserNotExist" };
    if (!root.roles.includes(ROOT_ROLE)) return { ok: false, error: "rootRoleNotExist" };
    this.enabled = true;
    this.merged.clear();
    return { ok: true };
  }

  private disable(): void {
    if (!this.enabled) return;
    this.enabled = false;
    this.tokens.clear();
    this.tokenOrder = [];
    this.tokenHead = 0;
    this.commit();
  }

  /**
   * etcd's InternalAuthenticate, plus the revision the API layer checked the
   * password at: if the auth state changed since, nothing is assigned and the
   * API layer checks again (etcd assigns and then retries).
   */
  private authenticate(
    name: string,
    prefix: string,
    checkedRevision: number,
    index: number,
  ): AuthApplyOutcome {
    if (!this.enabled) return { ok: false, error: "authNotEnabled" };
    const user = this.users.get(name);
    if (user === undefined || user.noPassword) return { ok: false, error: "authFailed" };
    if (checkedRevision !== this.rev) return { ok: false, error: "authOldRevision" };
    const token: AuthToken = { token: `${prefix}.${index}`, user: name, index };
    assert(!this.tokens.has(token.token), `auth: token for index ${index} assigned twice`);
    this.tokens.set(token.token, token);
    this.tokenOrder.push(token);
    if (this.tokens.size > AUTH_TOKENS_MAX) this.dropOldestToken();
    // Dropped tokens wait in tokenOrder until they reach its front: compact when they pile up.
    if (this.tokenHead > AUTH_TOKENS_MAX || this.tokenOrder.length - this.tokenHead > 2 * AUTH_TOKENS_MAX) {
      this.tokenOrder = this.tokenOrder.slice(this.tokenHead).filter((t) => this.tokens.get(t.token) === t);
      this.tokenHead = 0;
    }
    return { ok: true, token: token.token };
  }

  /**
   * Drops the oldest token still held. Only held tokens count, so a store
   * restored from a snapshot (which holds no dropped ones) drops the same.
   */
  private dropOldestToken(): void {
    for (;;) {
      const t = this.tokenOrder[this.tokenHead];
      assert(t !== undefined, "auth: a held token is missing from the order");
      this.tokenHead++;
      if (this.tokens.get(t.token) === t) {
        this.tokens.delete(t.token);
        return;
      }
    }
  }

  /** etcd invalidateUser: the user's tokens go (they stay in tokenOrder until they reach its front). */
  private invalidateTokens(user: string): void {
    for (const [token, t] of this.tokens) if (t.user === user) this.tokens.delete(token);
  }

  private userAdd(name: string, passwordHash: string | undefined): AuthApplyOutcome {
    if (name === "") return { ok: false, error: "userEmpty" };
    if (this.users.has(name)) return { ok: false, error: "userAlreadyExist" };
    this.users.set(name, { name, roles: [], passwordHash, noPassword: passwordHash === undefined });
    return this.commit();
  }

  private userDelete(name: string): AuthApplyOutcome {
    if (this.enabled && name === ROOT_USER) return { ok: false, error: "invalidAuthMgmt" };
    if (!this.users.delete(name)) return { ok: false, error: "userNotFound" };
    this.invalidateTokens(name);
    return this.commit();
  }

  private userChangePassword(name: string, passwordHash: string): AuthApplyOutcome {
    const user = this.users.get(name);
    if (user === undefined) return { ok: false, error: "userNotFound" };
    user.passwordHash = passwordHash;
    this.invalidateTokens(name);
    return this.commit();
  }

  private userGrantRole(name: string, role: string): AuthApplyOutcome {
    const user = this.users.get(name);
    if (user === undefined) return { ok: false, error: "userNotFound" };
    if (role !== ROOT_ROLE && !this.roles.has(role)) return { ok: false, error: "roleNotFound" };
    if (user.roles.includes(role)) return { ok: true }; // etcd: ignored, no new revision
    user.roles = [...user.roles, role].sort(compareNames);
    return this.commit();
  }

  private userRevokeRole(name: string, role: string): AuthApplyOutcome {
    if (this.enabled && name === ROOT_USER && role === ROOT_ROLE)
      return { ok: false, error: "invalidAuthMgmt" };
    const user = this.users.get(name);
    if (user === undefined) return { ok: false, error: "userNotFound" };
    if (!user.roles.includes(role)) return { ok: false, error: "roleNotGranted" };
    user.roles = user.roles.filter((r) => r !== role);
    return this.commit();
  }

  private roleAdd(name: string): AuthApplyOutcome {
    if (name === "") return { ok: false, error: "roleEmpty" };
    if (this.roles.has(name)) return { ok: false, error: "roleAlreadyExist" };
    this.roles.set(name, { name, permissions: [] });
    return this.commit();
  }

  private roleDelete(name: string): AuthApplyOutcome {
    if (this.enabled && name === ROOT_ROLE) return { ok: false, error: "invalidAuthMgmt" };
    if (!this.roles.delete(name)) return { ok: false, error: "roleNotFound" };
    for (const user of this.users.values()) user.roles = user.roles.filter((r) => r !== name);
    return this.commit();
  }

  /** etcd RoleGrantPermission (release-3.4: the range is checked first); an equal key and range end is updated. */
  private roleGrantPermission(name: string, p: Permission | undefined): AuthApplyOutcome {
    if (p === undefined) return { ok: false, error: "permissionNotGiven" };
    if (!isValidPermissionRange(p.key, p.rangeEnd)) return { ok: false, error: "invalidAuthMgmt" };
    const role = this.roles.get(name);
    if (role === undefined) return { ok: false, error: "roleNotFound" };
    const same = role.permissions.findIndex(
      (q) => compareBytes(q.key, p.key) === 0 && compareBytes(q.rangeEnd, p.rangeEnd) === 0,
    );
    const perm: Permission = { type: p.type, key: p.key.slice(), rangeEnd: p.rangeEnd.slice() };
    const next = [...role.permissions];
    if (same >= 0) next[same] = perm;
    else {
      // After every permission whose key is not greater: sorted by key, stable.
      let at = next.length;
      while (at > 0 && compareBytes(next[at - 1]!.key, perm.key) > 0) at--;
      next.splice(at, 0, perm);
    }
    role.permissions = next;
    return this.commit();
  }

  private roleRevokePermission(name: string, key: Uint8Array, rangeEnd: Uint8Array): AuthApplyOutcome {
    const role = this.roles.get(name);
    if (role === undefined) return { ok: false, error: "roleNotFound" };
    const kept = role.permissions.filter(
      (q) => compareBytes(q.key, key) !== 0 || compareBytes(q.rangeEnd, rangeEnd) !== 0,
    );
    if (kept.length === role.permissions.length) return { ok: false, error: "permissionNotGranted" };
    role.permissions = kept;
    return this.commit();
  }

  // -- snapshot ----------------------------------------------------------------

  snapshot(): AuthStoreSnapshot {
    return {
      enabled: this.enabled,
      revision: this.rev,
      users: this.userNames().map((n) => {
        const u = this.users.get(n)!;
        const base = { name: u.name, roles: [...u.roles], noPassword: u.noPassword };
        return u.passwordHash === undefined ? base : { ...base, passwordHash: u.passwordHash };
      }),
      roles: this.roleNames().map((n) => {
        const r = this.roles.get(n)!;
        return {
          name: r.name,
          permissions: r.permissions.map((p) => ({
            type: p.type,
            key: bytesToBase64(p.key),
            rangeEnd: bytesToBase64(p.rangeEnd),
          })),
        };
      }),
      tokens: this.tokenOrder.slice(this.tokenHead).filter((t) => this.tokens.get(t.token) === t),
    };
  }

  /** The store that made `snap`; undefined (a snapshot from before auth existed) is the empty, disabled store. */
  static restore(snap: AuthStoreSnapshot | undefined): AuthStore {
    const s = new AuthStore();
    if (snap === undefined) return s;
    assert(typeof snap.enabled === "boolean", "auth snapshot: enabled");
    assert(
      Number.isSafeInteger(snap.revision) && snap.revision >= FIRST_AUTH_REVISION,
      "auth snapshot: revision",
    );
    s.enabled = snap.enabled;
    s.rev = snap.revision;
    for (const u of snap.users) {
      assert(typeof u.name === "string" && Array.isArray(u.roles), "auth snapshot: user");
      s.users.set(u.name, {
        name: u.name,
        roles: [...u.roles],
        passwordHash: u.passwordHash,
        noPassword: u.noPassword === true,
      });
    }
    for (const r of snap.roles) {
      assert(typeof r.name === "string" && Array.isArray(r.permissions), "auth snapshot: role");
      s.roles.set(r.name, {
        name: r.name,
        permissions: r.permissions.map((p) => {
          const key = base64ToBytes(p.key);
          const rangeEnd = base64ToBytes(p.rangeEnd);
          assert(key !== undefined && rangeEnd !== undefined, "auth snapshot: permission bytes");
          assert(p.type === "read" || p.type === "write" || p.type === "readwrite", "auth snapshot: type");
          return { type: p.type, key, rangeEnd };
        }),
      });
    }
    for (const t of snap.tokens) {
      assert(typeof t.token === "string" && Number.isSafeInteger(t.index), "auth snapshot: token");
      const token: AuthToken = { token: t.token, user: t.user, index: t.index };
      s.tokens.set(token.token, token);
      s.tokenOrder.push(token);
    }
    return s;
  }
}
