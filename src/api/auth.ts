/**
 * etcd v3 auth at the API layer: who makes a call, whether it may, and the
 * etcdserverpb.Auth service. The replicated part (users, roles, permissions,
 * the auth revision, the tokens) is src/state/auth.ts; this file does what
 * needs time, randomness and crypto. Behaviour is etcd 3.4's (release-3.4:
 * etcdserver/v3_server.go, etcdserver/api/v3rpc/auth.go, auth/simple_token.go),
 * written from it.
 *
 * Contract:
 * - Passwords are hashed here, with scrypt from node:crypto and a random salt
 *   (`scrypt$<log2 N>$<r>$<p>$<salt>$<key>`, base64); only the hash enters
 *   the log. Passwords are never logged nor kept.
 * - Authenticate: a linearizable read of the user, the password checked
 *   against its hash (a user that does not exist costs the same), then an
 *   `authenticate` command with a random 16-letter prefix and the auth
 *   revision the password was checked at; the token is `<prefix>.<index>`
 *   (etcd's simple token), assigned by every member when it applies the
 *   entry, so any member accepts it. If the auth state changed in between,
 *   the member checks again (etcd does too). A user added with no_password
 *   is refused with etcd's plain "password was given for no password user".
 * - Auth management is root's, checked at apply for the caller the command
 *   carries (etcd's needAdminPermission); UserAdd and UserChangePassword
 *   check it here first too, so nobody else makes the member hash. UserGet
 *   is also the user's own, RoleGet also a holder's (apply_auth.go); these
 *   reads and the lists are linearizable reads checked where they read.
 * - Token time to live is member-local (etcd's --auth-token-ttl, default
 *   300 s), on the injected monotonic clock: it starts when this member
 *   applies the assignment and restarts at every use. A token naming an
 *   index this member has not applied yet waits for it (up to
 *   TOKEN_WAIT_MS), as etcd's indexWaiter does.
 * - Identity (etcd AuthInfoFromCtx, then AuthInfoFromTLS): while auth is
 *   enabled, the gRPC metadata `token` (or `authorization`) names the user;
 *   a token this member does not hold is "invalid auth token". Without a
 *   token, the client certificate's CN is the user (the client port asks for
 *   certificates only with --client-cert-auth). While auth is disabled a
 *   token is ignored (release-3.4).
 * - `authorize(call, checks)`: resolves at once while auth is disabled;
 *   otherwise a caller is needed ("user name is empty"), and root, or
 *   permissions covering every check. Writes are checked again at apply
 *   against the caller and revision they carry (machine.ts).
 */

import { randomBytes, randomInt, scrypt, timingSafeEqual } from "node:crypto";
import type { Metadata, UntypedServiceImplementation } from "@grpc/grpc-js";
import { assert } from "../raft/index.ts";
import type { Member, WriteOutcome } from "../server/member.ts";
import type {
  AccessCheck,
  AuthCommand,
  AuthError,
  AuthView,
  CommandAuth,
  PermissionType,
} from "../state/index.ts";
import { AUTH_NAME_LENGTH_MAX, AUTH_TOKEN_PREFIX_LENGTH } from "../state/index.ts";
import type { ApiHost, CallInfo } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import type { EtcdErrorName } from "./errors.ts";
import { WATCH_CANCEL_REASONS } from "./errors.ts";
import type { WireMessage } from "./proto.ts";

type W = WireMessage;

/** etcd's --auth-token-ttl default, in seconds. */
export const DEFAULT_AUTH_TOKEN_TTL_SECONDS = 300;
/** How long a call waits for this member to apply the entry its token names (then: invalid token). */
export const TOKEN_WAIT_MS = 5_000;
/** Calls waiting for a token's entry at once; more are answered "invalid auth token" at once. */
export const TOKEN_WAITERS_MAX = 1_024;
/** Times Authenticate checks the password again when the auth state changed meanwhile. */
export const AUTHENTICATE_ATTEMPTS_MAX = 5;
/** How often (at most) the local token table drops what expired or the store dropped. */
const TOKEN_SWEEP_INTERVAL_MS = 1_000;

/** Each catalogued error of the auth store (src/state/auth.ts). */
export const AUTH_ERROR_NAMES: Readonly<Record<AuthError, EtcdErrorName>> = {
  userEmpty: "UserEmpty",
  userNotFound: "UserNotFound",
  userAlreadyExist: "UserAlreadyExist",
  roleEmpty: "RoleEmpty",
  roleNotFound: "RoleNotFound",
  roleAlreadyExist: "RoleAlreadyExist",
  rootUserNotExist: "RootUserNotExist",
  rootRoleNotExist: "RootRoleNotExist",
  authFailed: "AuthFailed",
  authNotEnabled: "AuthNotEnabled",
  authOldRevision: "AuthOldRevision",
  permissionDenied: "PermissionDenied",
  roleNotGranted: "RoleNotGranted",
  permissionNotGranted: "PermissionNotGranted",
  permissionNotGiven: "PermissionNotGiven",
  invalidAuthMgmt: "InvalidAuthMgmt",
};

// ---------------------------------------------------------------- passwords

/** scrypt's cost: N = 2^logN, block size r, parallelism p (about 50 ms and 16 MiB at the defaults). */
export interface PasswordHashCost {
  readonly logN: number;
  readonly r: number;
  readonly p: number;
}

/**
 * The cost of new hashes: about 50 ms and 16 MiB, like etcd's bcrypt at its
 * default --bcrypt-cost 10 (OWASP's scrypt advice is stronger: N=2^17 for
 * p=1; the cost is a parameter of each hash, so it can grow later).
 */
export const DEFAULT_PASSWORD_HASH_COST: PasswordHashCost = Object.freeze({ logN: 14, r: 8, p: 1 });
/** The most a stored hash may ask for (128 MiB, OWASP's strongest): a hash from elsewhere must not exhaust the member. */
const HASH_COST_MAX: PasswordHashCost = Object.freeze({ logN: 17, r: 8, p: 2 });
const SALT_BYTES = 16;
const KEY_BYTES = 32;

function scryptKey(password: string, salt: Buffer, cost: PasswordHashCost): Promise<Buffer> {
  const N = 2 ** cost.logN;
  return new Promise((resolve, reject) => {
    scrypt(
      password,
      salt,
      KEY_BYTES,
      { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r + 1024 * 1024 },
      (err, key) => (err === null ? resolve(key) : reject(err)),
    );
  });
}

/** A new hash of `password`: scrypt with a random salt. */
export async function hashPassword(
  password: string,
  cost: PasswordHashCost = DEFAULT_PASSWORD_HASH_COST,
): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptKey(password, salt, cost);
  return `scrypt$${cost.logN}$${cost.r}$${cost.p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

/** Whether `password` matches `hash` (made by hashPassword); false for anything malformed. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(hash);
  if (m === null) return false;
  const cost = { logN: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (
    cost.logN < 1 ||
    cost.logN > HASH_COST_MAX.logN ||
    cost.r < 1 ||
    cost.r > HASH_COST_MAX.r ||
    cost.p < 1 ||
    cost.p > HASH_COST_MAX.p
  )
    return false;
  const want = Buffer.from(m[5]!, "base64");
  if (want.length !== KEY_BYTES) return false;
  const got = await scryptKey(password, Buffer.from(m[4]!, "base64"), cost);
  return timingSafeEqual(got, want);
}

const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** etcd genTokenPrefix: 16 random letters. */
export function newTokenPrefix(): string {
  let out = "";
  for (let i = 0; i < AUTH_TOKEN_PREFIX_LENGTH; i++) out += LETTERS[randomInt(LETTERS.length)];
  return out;
}

// ---------------------------------------------------------------- tokens

/**
 * The member-local lives of the tokens the store holds: each lives `ttlMs`
 * from its assignment (when this member applied it) and from every use.
 */
export class TokenKeeper {
  /** token -> the monotonic time it dies. Invariant: only tokens the store held when last seen. */
  private readonly deadlines = new Map<string, number>();
  /** The highest entry index whose tokens were taken in. */
  private cursor = 0;
  private lastSweepMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly ttlMs: number,
    private readonly nowMs: () => number,
  ) {}

  /**
   * Never takes in the tokens of entries up to `index`: they were assigned in
   * an earlier life of this process (the log replayed at a restart) or they
   * came in a snapshot. etcd keeps simple tokens in memory only, so neither a
   * restart nor a snapshot brings one back.
   */
  skipThrough(index: number): void {
    this.cursor = Math.max(this.cursor, index);
  }

  /** Takes in the tokens assigned since the last call (call after every apply and restore). */
  sync(store: AuthView): void {
    const now = this.nowMs();
    for (const t of store.tokensAfter(this.cursor)) {
      this.deadlines.set(t.token, now + this.ttlMs);
      this.cursor = t.index;
    }
    if (now - this.lastSweepMs < TOKEN_SWEEP_INTERVAL_MS) return;
    this.lastSweepMs = now;
    for (const [token, deadline] of this.deadlines)
      if (deadline <= now || store.tokenUser(token) === undefined) this.deadlines.delete(token);
  }

  /** The token's user if it is alive here and in the store; its life starts over. */
  use(store: AuthView, token: string): string | undefined {
    const now = this.nowMs();
    const deadline = this.deadlines.get(token);
    const user = store.tokenUser(token);
    if (deadline === undefined || deadline <= now || user === undefined) {
      this.deadlines.delete(token);
      return undefined;
    }
    this.deadlines.set(token, now + this.ttlMs);
    return user;
  }

  /** Tokens alive here (tests, metrics). */
  get size(): number {
    return this.deadlines.size;
  }
}

/** The index a simple token names (`prefix.index`), or undefined if it is not one. */
export function tokenIndex(token: string): number | undefined {
  const m = /^[A-Za-z]+\.(\d{1,15})$/.exec(token);
  return m === null ? undefined : Number(m[1]);
}

function metadataText(md: Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return typeof v === "string" ? v : v === undefined ? undefined : v.toString("utf8");
}

/** The client certificate's common name, if the call came with one. */
export function certificateCommonName(call: CallInfo): string | undefined {
  const cn = call.getAuthContext?.()?.sslPeerCertificate?.subject?.CN;
  const name = Array.isArray(cn) ? cn[0] : cn;
  return typeof name === "string" && name !== "" ? name : undefined;
}

// ---------------------------------------------------------------- the gate

export interface AuthGateOptions {
  readonly member: Member;
  /** etcd --auth-token-ttl; default DEFAULT_AUTH_TOKEN_TTL_SECONDS. */
  readonly tokenTtlSeconds?: number | undefined;
  /** A monotonic clock in ms (token lives); default performance.now. */
  readonly nowMs?: (() => number) | undefined;
  /** How long a token's entry is waited for; default TOKEN_WAIT_MS. */
  readonly tokenWaitMs?: number | undefined;
}

interface TokenWaiter {
  readonly index: number;
  readonly done: () => void;
}

/** Who a call is, and whether it may do what it asks (see the file header). */
export class AuthGate {
  private readonly member: Member;
  private readonly keeper: TokenKeeper;
  private readonly tokenWaitMs: number;
  private readonly waiters = new Set<TokenWaiter>();

  constructor(options: AuthGateOptions) {
    this.member = options.member;
    const ttlSeconds = options.tokenTtlSeconds ?? DEFAULT_AUTH_TOKEN_TTL_SECONDS;
    const now = options.nowMs ?? (() => performance.now());
    this.keeper = new TokenKeeper(ttlSeconds * 1000, now);
    this.tokenWaitMs = options.tokenWaitMs ?? TOKEN_WAIT_MS;
    // What was committed before this process started is the previous life's.
    this.keeper.skipThrough(this.member.raft.log.committed);
    this.keeper.sync(this.store());
  }

  /** The member's auth store (a restore replaces it: never keep it). */
  store(): AuthView {
    return this.member.machine.authStore();
  }

  /** Call after every Ready that applied entries or (`restored`) replaced the state with a snapshot. */
  onApplied(restored = false): void {
    if (restored) this.keeper.skipThrough(this.member.machine.appliedIndex());
    this.keeper.sync(this.store());
    const applied = this.member.machine.appliedIndex();
    for (const w of this.waiters) if (w.index <= applied) w.done();
  }

  /** Tokens alive on this member. */
  get tokenCount(): number {
    return this.keeper.size;
  }

  /** Calls waiting for the entry their token names (tests, metrics). */
  get tokenWaiters(): number {
    return this.waiters.size;
  }

  /**
   * The caller, while auth is enabled: from its token (throws "invalid auth
   * token" for one this member does not hold), else from its client
   * certificate; undefined when neither (or auth is off). Synchronous unless
   * the token names an entry not applied here yet.
   */
  identify(call: CallInfo): CommandAuth | undefined | Promise<CommandAuth | undefined> {
    return this.identifyWith(call, true);
  }

  private identifyWith(
    call: CallInfo,
    wait: boolean,
  ): CommandAuth | undefined | Promise<CommandAuth | undefined> {
    if (!this.store().isEnabled()) return undefined;
    const token = metadataText(call.metadata, "token") ?? metadataText(call.metadata, "authorization");
    if (token !== undefined) {
      const index = tokenIndex(token);
      if (index === undefined) throw new ErrorAnswer("InvalidAuthToken");
      if (index > this.member.machine.appliedIndex()) {
        if (!wait) throw new ErrorAnswer("InvalidAuthToken");
        return this.waitFor(index).then(() => this.fromToken(token));
      }
      return this.fromToken(token);
    }
    const cn = certificateCommonName(call);
    return cn === undefined ? undefined : { user: cn, revision: this.store().revision() };
  }

  private fromToken(token: string): CommandAuth | undefined {
    const store = this.store();
    if (!store.isEnabled()) return undefined;
    const user = this.keeper.use(store, token);
    if (user === undefined) throw new ErrorAnswer("InvalidAuthToken");
    return { user, revision: store.revision() };
  }

  private waitFor(index: number): Promise<void> {
    if (this.waiters.size >= TOKEN_WAITERS_MAX) return Promise.resolve();
    return new Promise((resolve) => {
      const w: TokenWaiter = {
        index,
        done: () => {
          clearTimeout(timer);
          this.waiters.delete(w);
          resolve();
        },
      };
      const timer = setTimeout(() => w.done(), this.tokenWaitMs);
      timer.unref();
      this.waiters.add(w);
    });
  }

  /** identify() as a promise. */
  async caller(call: CallInfo): Promise<CommandAuth | undefined> {
    return this.identify(call);
  }

  /**
   * identify() without waiting: a token naming an entry not applied here is
   * invalid. For checks made inside a read, after caller() waited once.
   */
  callerNow(call: CallInfo): CommandAuth | undefined {
    const caller = this.identifyWith(call, false);
    assert(!(caller instanceof Promise), "auth: identify waited when told not to");
    return caller;
  }

  /**
   * ApiHost.authorize: the caller, after checking it may do every one of
   * `checks` now (no checks: only that there is a caller while auth is on).
   * Throws the etcd error otherwise.
   */
  async authorize(call: CallInfo, checks: readonly AccessCheck[]): Promise<CommandAuth | undefined> {
    const caller = await this.identify(call);
    this.check(this.store(), caller, checks);
    return caller;
  }

  /** The caller, after checking it is root (etcd IsAdminPermitted); undefined while auth is off. */
  async authorizeAdmin(call: CallInfo): Promise<CommandAuth | undefined> {
    const caller = await this.identify(call);
    const err = this.store().checkAdmin(caller);
    if (err !== undefined) throw new ErrorAnswer(AUTH_ERROR_NAMES[err]);
    return caller;
  }

  /** Throws the etcd error if `caller` may not do `checks` on `store` (call it where the read happens). */
  check(store: AuthView, caller: CommandAuth | undefined, checks: readonly AccessCheck[]): void {
    const err = store.checkAccess(caller, checks);
    if (err !== undefined) throw new ErrorAnswer(AUTH_ERROR_NAMES[err]);
  }

  /**
   * The cancel_reason for a watch the caller may not create on [key, rangeEnd)
   * (etcd isWatchPermitted), or undefined when it may. An empty key is "\0",
   * etcd's smallest key; rangeEnd "\0" is every key from `key` on (etcd 3.4
   * checks only `key` then: leasehold checks the whole range).
   */
  watchRefusal(
    call: CallInfo,
    key: Uint8Array,
    rangeEnd: Uint8Array | undefined,
  ): string | undefined | Promise<string | undefined> {
    const judge = (caller: CommandAuth | undefined): string | undefined => {
      const err = this.store().checkAccess(caller, [
        { key: key.length === 0 ? Uint8Array.of(0) : key, rangeEnd, type: "read" },
      ]);
      return err === undefined ? undefined : watchCancelReason(err);
    };
    let caller: CommandAuth | undefined | Promise<CommandAuth | undefined>;
    try {
      caller = this.identify(call);
    } catch (e) {
      return refusalOf(e);
    }
    if (caller instanceof Promise) return caller.then(judge, refusalOf);
    return judge(caller);
  }
}

function refusalOf(e: unknown): string {
  if (e instanceof ErrorAnswer && e.etcdError === "InvalidAuthToken")
    return WATCH_CANCEL_REASONS.InvalidAuthToken;
  throw e;
}

/** etcd's watch cancel_reason for an auth failure (watch.go, since v3.4.22). */
function watchCancelReason(err: AuthError): string {
  switch (err) {
    case "authOldRevision":
      return WATCH_CANCEL_REASONS.AuthOldRevision;
    case "userEmpty":
      return WATCH_CANCEL_REASONS.UserEmpty;
    default:
      return WATCH_CANCEL_REASONS.PermissionDenied;
  }
}

// ---------------------------------------------------------------- the service

/** The auth commands a caller sends (all but authenticate): they carry the caller. */
type ManagementCommand = Exclude<AuthCommand, { readonly type: "authenticate" }>;

/** authpb.Permission.Type by number. */
const PERMISSION_TYPES: readonly PermissionType[] = ["read", "write", "readwrite"];

export interface AuthServiceOptions {
  /** scrypt cost of new password hashes; default DEFAULT_PASSWORD_HASH_COST. */
  readonly passwordHashCost?: PasswordHashCost | undefined;
}

function bytesOf(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? new Uint8Array(v) : new Uint8Array(0);
}

function textOf(v: unknown): string {
  const s = typeof v === "string" ? v : "";
  if (s.length > AUTH_NAME_LENGTH_MAX) throw new ErrorAnswer("RequestTooLarge");
  return s;
}

/** etcdserverpb.Auth on `host`, with `gate` for callers. */
export function authService(
  host: ApiHost,
  gate: AuthGate,
  options: AuthServiceOptions = {},
): UntypedServiceImplementation {
  const cost = options.passwordHashCost ?? DEFAULT_PASSWORD_HASH_COST;
  const member = host.member;
  let dummyHash: Promise<string> | undefined;

  /** Proposes an auth command for the caller; its header, or the etcd error. */
  const run = async (call: CallInfo, command: ManagementCommand, caller?: CommandAuth): Promise<W> => {
    const auth = caller ?? (await gate.caller(call));
    const out = await member.write(auth === undefined ? command : { ...command, auth });
    return { header: host.header(resultOf(out).header.revision) };
  };

  /** A read of the store, linearizable (etcd serves these through Raft). */
  const read = <T>(f: (store: AuthView) => T): Promise<T> => member.read(true, (m) => f(m.authStore()));

  const authenticate = async (w: W): Promise<W> => {
    const name = textOf(w.name);
    const password = typeof w.password === "string" ? w.password : "";
    for (let attempt = 0; attempt < AUTHENTICATE_ATTEMPTS_MAX; attempt++) {
      const seen = await read((s) => ({
        enabled: s.isEnabled(),
        revision: s.revision(),
        user: s.user(name),
      }));
      if (!seen.enabled) throw new ErrorAnswer("AuthNotEnabled");
      if (seen.user?.noPassword === true) throw new ErrorAnswer("NoPasswordUser");
      const hash = seen.user?.passwordHash;
      // A missing user costs a hash too, so the answer's timing does not tell users apart.
      dummyHash ??= hashPassword("", cost);
      const matches = await verifyPassword(password, hash ?? (await dummyHash));
      if (!matches || hash === undefined) throw new ErrorAnswer("AuthFailed");
      const out = await member.write({
        type: "authenticate",
        user: name,
        tokenPrefix: newTokenPrefix(),
        authRevision: seen.revision,
      });
      const r = out.result;
      if (r.kind === "auth" && r.token !== undefined)
        return { header: host.header(r.header.revision), token: r.token };
      if (r.kind === "failed" && r.error === "authOldRevision") continue;
      resultOf(out);
    }
    throw new ErrorAnswer("AuthOldRevision");
  };

  /** A hash of the request's password: after the caller is known to be root, so nobody else costs us a hash. */
  const hashFor = async (
    call: CallInfo,
    password: unknown,
  ): Promise<{ caller?: CommandAuth; hash: string }> => {
    const caller = await gate.authorizeAdmin(call);
    const hash = await hashPassword(typeof password === "string" ? password : "", cost);
    return caller === undefined ? { hash } : { caller, hash };
  };

  return {
    AuthEnable: host.unary((_w, call) => run(call, { type: "authEnable" })),
    AuthDisable: host.unary((_w, call) => run(call, { type: "authDisable" })),
    Authenticate: host.unary((w) => authenticate(w)),
    UserAdd: host.unary(async (w, call) => {
      const user = textOf(w.name);
      const options = w.options as W | null;
      if (options?.no_password === true) {
        return run(call, { type: "authUserAdd", user }, await gate.authorizeAdmin(call));
      }
      const { caller, hash } = await hashFor(call, w.password);
      return run(call, { type: "authUserAdd", user, passwordHash: hash }, caller);
    }),
    UserGet: host.unary(async (w, call) => {
      const name = textOf(w.name);
      const caller = await gate.caller(call);
      const roles = await read((s) => {
        const adminErr = s.checkAdmin(caller);
        if (adminErr !== undefined && caller?.user !== name)
          throw new ErrorAnswer(AUTH_ERROR_NAMES[adminErr]);
        const u = s.user(name);
        if (u === undefined) throw new ErrorAnswer("UserNotFound");
        return u.roles;
      });
      return { header: host.header(), roles: [...roles] };
    }),
    UserList: host.unary(async (_w, call) => {
      const caller = await gate.caller(call);
      const users = await read((s) => {
        const err = s.checkAdmin(caller);
        if (err !== undefined) throw new ErrorAnswer(AUTH_ERROR_NAMES[err]);
        return s.userNames();
      });
      return { header: host.header(), users };
    }),
    UserDelete: host.unary((w, call) => run(call, { type: "authUserDelete", user: textOf(w.name) })),
    UserChangePassword: host.unary(async (w, call) => {
      const user = textOf(w.name);
      const { caller, hash } = await hashFor(call, w.password);
      return run(call, { type: "authUserChangePassword", user, passwordHash: hash }, caller);
    }),
    UserGrantRole: host.unary((w, call) =>
      run(call, { type: "authUserGrantRole", user: textOf(w.user), role: textOf(w.role) }),
    ),
    UserRevokeRole: host.unary((w, call) =>
      run(call, { type: "authUserRevokeRole", user: textOf(w.name), role: textOf(w.role) }),
    ),
    RoleAdd: host.unary((w, call) => run(call, { type: "authRoleAdd", role: textOf(w.name) })),
    RoleGet: host.unary(async (w, call) => {
      const role = textOf(w.role);
      const caller = await gate.caller(call);
      const perms = await read((s) => {
        const adminErr = s.checkAdmin(caller);
        if (adminErr !== undefined && !(caller !== undefined && s.hasRole(caller.user, role)))
          throw new ErrorAnswer(AUTH_ERROR_NAMES[adminErr]);
        const r = s.role(role);
        if (r === undefined) throw new ErrorAnswer("RoleNotFound");
        return r.permissions;
      });
      return {
        header: host.header(),
        perm: perms.map((p) => ({
          permType: PERMISSION_TYPES.indexOf(p.type),
          key: Buffer.from(p.key),
          range_end: Buffer.from(p.rangeEnd),
        })),
      };
    }),
    RoleList: host.unary(async (_w, call) => {
      const caller = await gate.caller(call);
      const roles = await read((s) => {
        const err = s.checkAdmin(caller);
        if (err !== undefined) throw new ErrorAnswer(AUTH_ERROR_NAMES[err]);
        return s.roleNames();
      });
      return { header: host.header(), roles };
    }),
    RoleDelete: host.unary((w, call) => run(call, { type: "authRoleDelete", role: textOf(w.role) })),
    RoleGrantPermission: host.unary((w, call) => {
      const role = textOf(w.name);
      const perm = w.perm as W | null;
      if (perm === null || perm === undefined) return run(call, { type: "authRoleGrantPermission", role });
      const type = PERMISSION_TYPES[typeof perm.permType === "number" ? perm.permType : -1];
      if (type === undefined) throw new ErrorAnswer("InvalidAuthMgmt");
      return run(call, {
        type: "authRoleGrantPermission",
        role,
        permission: { type, key: bytesOf(perm.key), rangeEnd: bytesOf(perm.range_end) },
      });
    }),
    RoleRevokePermission: host.unary((w, call) =>
      run(call, {
        type: "authRoleRevokePermission",
        role: textOf(w.role),
        key: bytesOf(w.key),
        rangeEnd: bytesOf(w.range_end),
      }),
    ),
  };
}

/** The applied result of an auth command, or its etcd error thrown. */
function resultOf(out: WriteOutcome): { readonly header: { readonly revision: number } } {
  const r = out.result;
  switch (r.kind) {
    case "auth":
      return r;
    case "failed":
      throw new ErrorAnswer(isAuthError(r.error) ? AUTH_ERROR_NAMES[r.error] : "NotCapable");
    default:
      throw new ErrorAnswer("NotCapable");
  }
}

function isAuthError(e: string): e is AuthError {
  return Object.hasOwn(AUTH_ERROR_NAMES, e);
}
