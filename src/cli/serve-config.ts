/**
 * `leasehold serve` configuration, from etcd's flag names and meanings (etcd
 * 3.4 `etcd --help`), so that an etcd user's scripts work unchanged:
 *
 *   --name, --data-dir, --listen-client-urls, --advertise-client-urls,
 *   --listen-peer-urls, --initial-advertise-peer-urls, --initial-cluster,
 *   --initial-cluster-state, --initial-cluster-token, --heartbeat-interval,
 *   --election-timeout, --snapshot-count, --cert-file, --key-file,
 *   --trusted-ca-file, --client-cert-auth, --peer-cert-file, --peer-key-file,
 *   --peer-trusted-ca-file, --peer-client-cert-auth, --quota-backend-bytes,
 *   --auth-token (simple only), --auth-token-ttl
 *
 * Both `--flag value` and `--flag=value`. Defaults as etcd's, except that the
 * URLs use 127.0.0.1 (not localhost) and the data directory is
 * `<name>.leasehold`. With no flags: one member "default", clients on
 * 127.0.0.1:2379, peers on 127.0.0.1:2380.
 *
 * Every bad or contradictory flag is a `ConfigError` naming the flag; nothing
 * starts. Checks (etcd's where etcd has them): URLs are http(s)://host:port;
 * https client URLs need --cert-file and --key-file (and https peer URLs the
 * --peer-* pair); --client-cert-auth needs --trusted-ca-file; the election
 * timeout is at least 5 heartbeats and at most 50 s; --name appears in
 * --initial-cluster, and there with the URLs of --initial-advertise-peer-urls.
 *
 * Member ids are derived from the cluster token and the member's name and peer
 * URLs (as etcd derives them from the URLs and token), so every member computes
 * the same ids from the same --initial-cluster: 48-bit, never 0.
 */

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly trustedCaFile: string | undefined;
  readonly clientCertAuth: boolean;
}

export interface Endpoint {
  readonly url: string;
  readonly scheme: "http" | "https";
  readonly host: string;
  readonly port: number;
}

export interface InitialMember {
  readonly name: string;
  readonly id: number;
  readonly peerUrls: readonly Endpoint[];
}

export interface ServeConfig {
  readonly name: string;
  readonly dataDir: string;
  readonly listenClientUrls: readonly Endpoint[];
  readonly advertiseClientUrls: readonly Endpoint[];
  readonly listenPeerUrls: readonly Endpoint[];
  readonly initialAdvertisePeerUrls: readonly Endpoint[];
  readonly initialCluster: readonly InitialMember[];
  readonly initialClusterState: "new" | "existing";
  readonly initialClusterToken: string;
  /** This member's id (from --initial-cluster). */
  readonly memberId: number;
  /** The cluster id: the token and every initial member. */
  readonly clusterId: bigint;
  readonly heartbeatIntervalMs: number;
  readonly electionTimeoutMs: number;
  readonly snapshotCount: number;
  readonly clientTls: TlsFiles | undefined;
  readonly peerTls: TlsFiles | undefined;
  /**
   * etcd --quota-backend-bytes as given (default 0): 0 means etcd's default
   * (2 GiB), a negative value no quota (src/api/maintenance.ts SpaceQuota).
   */
  readonly quotaBackendBytes: number;
  /** etcd --auth-token-ttl: seconds a simple token lives unused (default 300). */
  readonly authTokenTtlSeconds: number;
}

const OPTIONS = {
  name: { type: "string" },
  "data-dir": { type: "string" },
  "listen-client-urls": { type: "string" },
  "advertise-client-urls": { type: "string" },
  "listen-peer-urls": { type: "string" },
  "initial-advertise-peer-urls": { type: "string" },
  "initial-cluster": { type: "string" },
  "initial-cluster-state": { type: "string" },
  "initial-cluster-token": { type: "string" },
  "heartbeat-interval": { type: "string" },
  "election-timeout": { type: "string" },
  "snapshot-count": { type: "string" },
  "cert-file": { type: "string" },
  "key-file": { type: "string" },
  "trusted-ca-file": { type: "string" },
  "client-cert-auth": { type: "boolean" },
  "peer-cert-file": { type: "string" },
  "peer-key-file": { type: "string" },
  "peer-trusted-ca-file": { type: "string" },
  "peer-client-cert-auth": { type: "boolean" },
  "quota-backend-bytes": { type: "string" },
  "auth-token": { type: "string" },
  "auth-token-ttl": { type: "string" },
} as const;

/** The flags `serve` takes (test: each is in SERVE_USAGE). */
export const SERVE_FLAGS: readonly string[] = Object.keys(OPTIONS);

/** What `leasehold serve --help` prints: every flag OPTIONS takes, with etcd's meaning and our default. */
export const SERVE_USAGE = `usage: leasehold serve [flags]   (etcd 3.4's flags and meanings; --flag value or --flag=value)

Run one member. With no flags: a one-member cluster "default", clients on
127.0.0.1:2379, peers on 127.0.0.1:2380, data in ./default.leasehold.

Member:
  --name NAME                          member name (default "default")
  --data-dir DIR                       WAL and snapshots (default "<name>.leasehold")
  --snapshot-count N                   applied entries between snapshots (default 100000)
  --quota-backend-bytes N              space quota; past it writes fail with NOSPACE (default 2 GiB)
  --heartbeat-interval MS              leader heartbeat (default 100)
  --election-timeout MS                at least 5 heartbeats, at most 50000 (default 1000)
Clients:
  --listen-client-urls URLS            comma-separated http(s)://host:port (default http://127.0.0.1:2379)
  --advertise-client-urls URLS         what members tell clients (default as listened)
  --cert-file FILE, --key-file FILE    TLS for https client URLs
  --trusted-ca-file FILE               CA of client certificates (with --client-cert-auth)
  --client-cert-auth                   require client certificates; their CN is the user
  --auth-token simple                  auth token kind (only "simple"; jwt is not supported)
  --auth-token-ttl SECONDS             idle lifetime of a simple token (default 300)
Cluster:
  --listen-peer-urls URLS              (default http://127.0.0.1:2380)
  --initial-advertise-peer-urls URLS   must match this member's entry in --initial-cluster
  --initial-cluster NAME=URL,...       the founding members (default "<name>=<advertised peer URL>")
  --initial-cluster-state new|existing existing: join a cluster that added this member (etcdctl member add)
  --initial-cluster-token TOKEN        tells clusters apart (default "etcd-cluster")
  --peer-cert-file FILE, --peer-key-file FILE, --peer-trusted-ca-file FILE, --peer-client-cert-auth
                                       TLS between members, as for clients

Exit codes: 0 stopped by SIGTERM/SIGINT or removed from the cluster; 1 failed to start; 2 a bad flag.
`;

/** etcd's upper bound on --election-timeout. */
const ELECTION_TIMEOUT_MAX_MS = 50_000;

/** Parses `leasehold serve` arguments (without "serve"). Throws ConfigError. */
export function parseServeArgs(args: readonly string[]): ServeConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: [...args], options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new ConfigError((e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ""));
  }
  const str = (k: keyof typeof OPTIONS, dflt: string): string => {
    const v = values[k];
    if (typeof v !== "string") return dflt;
    if (v.trim() === "") throw new ConfigError(`--${k} must not be empty`);
    return v;
  };
  const name = str("name", "default");
  const clientDefault = "http://127.0.0.1:2379";
  const peerDefault = "http://127.0.0.1:2380";
  const listenClientUrls = parseUrls("listen-client-urls", str("listen-client-urls", clientDefault));
  const advertiseClientUrls = parseUrls("advertise-client-urls", str("advertise-client-urls", clientDefault));
  const listenPeerUrls = parseUrls("listen-peer-urls", str("listen-peer-urls", peerDefault));
  const advertisePeer = str("initial-advertise-peer-urls", peerDefault);
  const initialAdvertisePeerUrls = parseUrls("initial-advertise-peer-urls", advertisePeer);
  const token = str("initial-cluster-token", "etcd-cluster");
  const initialCluster = parseInitialCluster(str("initial-cluster", `${name}=${advertisePeer}`), token);

  const state = str("initial-cluster-state", "new");
  if (state !== "new" && state !== "existing")
    throw new ConfigError(`--initial-cluster-state must be "new" or "existing", got "${state}"`);

  const self = initialCluster.find((m) => m.name === name);
  if (self === undefined)
    throw new ConfigError(
      `--initial-cluster has no member named "${name}" (--name); it lists: ${initialCluster.map((m) => m.name).join(", ")}`,
    );
  const want = initialAdvertisePeerUrls
    .map((u) => u.url)
    .sort()
    .join(",");
  const have = self.peerUrls
    .map((u) => u.url)
    .sort()
    .join(",");
  if (want !== have)
    throw new ConfigError(
      `--initial-cluster has ${name}=${have} but --initial-advertise-peer-urls is ${want}: they must match`,
    );

  const heartbeatIntervalMs = int("heartbeat-interval", str("heartbeat-interval", "100"), 1);
  const electionTimeoutMs = int("election-timeout", str("election-timeout", "1000"), 1);
  if (electionTimeoutMs < 5 * heartbeatIntervalMs)
    throw new ConfigError(
      `--election-timeout[${electionTimeoutMs}ms] should be at least as 5 times as --heartbeat-interval[${heartbeatIntervalMs}ms]`,
    );
  if (electionTimeoutMs > ELECTION_TIMEOUT_MAX_MS)
    throw new ConfigError(
      `--election-timeout[${electionTimeoutMs}ms] is too long, and should be set less than 50 seconds`,
    );
  const snapshotCount = int("snapshot-count", str("snapshot-count", "100000"), 1);
  const quotaText = str("quota-backend-bytes", "0");
  if (!/^-?[0-9]+$/.test(quotaText) || !Number.isSafeInteger(Number(quotaText)))
    throw new ConfigError(`--quota-backend-bytes must be a whole number of bytes, got "${quotaText}"`);
  const quotaBackendBytes = Number(quotaText);
  const authToken = str("auth-token", "simple");
  if (authToken !== "simple")
    throw new ConfigError(
      `--auth-token "${authToken}" is not supported: only "simple" tokens (JWT is not implemented)`,
    );
  const authTokenTtlSeconds = int("auth-token-ttl", str("auth-token-ttl", "300"), 1);

  const clientTls = tlsFiles(values, "", [...listenClientUrls, ...advertiseClientUrls]);
  const peerTls = tlsFiles(values, "peer-", [...listenPeerUrls, ...initialAdvertisePeerUrls]);

  const clusterHash = createHash("sha256").update(token);
  for (const m of [...initialCluster].sort((a, b) => a.id - b.id)) clusterHash.update(`\0${m.id}`);
  const clusterId = BigInt(`0x${clusterHash.digest("hex").slice(0, 16)}`);

  return {
    name,
    dataDir: str("data-dir", `${name}.leasehold`),
    listenClientUrls,
    advertiseClientUrls,
    listenPeerUrls,
    initialAdvertisePeerUrls,
    initialCluster,
    initialClusterState: state,
    initialClusterToken: token,
    memberId: self.id,
    clusterId,
    heartbeatIntervalMs,
    electionTimeoutMs,
    snapshotCount,
    clientTls,
    peerTls,
    quotaBackendBytes,
    authTokenTtlSeconds,
  };
}

function int(flag: string, text: string, min: number): number {
  if (!/^[0-9]+$/.test(text)) throw new ConfigError(`--${flag} must be a whole number, got "${text}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min)
    throw new ConfigError(`--${flag} must be at least ${min}, got ${text}`);
  return n;
}

/** A comma-separated list of http(s)://host:port URLs. */
export function parseUrls(flag: string, text: string): Endpoint[] {
  const out: Endpoint[] = [];
  for (const part of text.split(",")) {
    const raw = part.trim();
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new ConfigError(`--${flag}: "${raw}" is not a URL (want http://host:port)`);
    }
    const scheme = u.protocol.replace(/:$/, "");
    if (scheme !== "http" && scheme !== "https")
      throw new ConfigError(`--${flag}: "${raw}" must use http or https, not ${scheme}`);
    if (u.port === "") throw new ConfigError(`--${flag}: "${raw}" has no port`);
    if ((u.pathname !== "/" && u.pathname !== "") || u.search !== "" || u.hash !== "" || u.username !== "")
      throw new ConfigError(`--${flag}: "${raw}" must be scheme://host:port only`);
    const host = u.hostname.replace(/^\[|\]$/g, "");
    out.push({ url: `${scheme}://${u.host}`, scheme, host, port: Number(u.port) });
  }
  return out;
}

/** name=url[,name=url...]; one name may appear several times (several peer URLs). */
function parseInitialCluster(text: string, token: string): InitialMember[] {
  const urls = new Map<string, Endpoint[]>();
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new ConfigError(`--initial-cluster: "${part}" is not name=url`);
    const name = part.slice(0, eq).trim();
    const list = urls.get(name) ?? [];
    list.push(...parseUrls("initial-cluster", part.slice(eq + 1)));
    urls.set(name, list);
  }
  const members = [...urls].map(([name, peerUrls]) => ({
    name,
    peerUrls,
    id: deriveMemberId(token, name, peerUrls),
  }));
  const ids = new Set(members.map((m) => m.id));
  if (ids.size !== members.length) throw new ConfigError("--initial-cluster: two members derive the same id");
  const seen = new Map<string, string>();
  for (const m of members) {
    for (const u of m.peerUrls) {
      const other = seen.get(u.url);
      if (other !== undefined)
        throw new ConfigError(`--initial-cluster: ${u.url} is given for both ${other} and ${m.name}`);
      seen.set(u.url, m.name);
    }
  }
  return members;
}

/** 48 bits of sha256(token, name, sorted peer URLs); never 0. */
export function deriveMemberId(token: string, name: string, peerUrls: readonly Endpoint[]): number {
  const h = createHash("sha256").update(
    `${token}\0${name}\0${peerUrls
      .map((u) => u.url)
      .sort()
      .join(",")}`,
  );
  const id = Number.parseInt(h.digest("hex").slice(0, 12), 16);
  return id === 0 ? 1 : id;
}

function tlsFiles(
  values: Record<string, string | boolean | undefined>,
  prefix: "" | "peer-",
  urls: readonly Endpoint[],
): TlsFiles | undefined {
  const get = (k: string): string | undefined => {
    const v = values[`${prefix}${k}`];
    return typeof v === "string" ? v : undefined;
  };
  const certFile = get("cert-file");
  const keyFile = get("key-file");
  const trustedCaFile = get("trusted-ca-file");
  const clientCertAuth = values[`${prefix}client-cert-auth`] === true;
  const https = urls.some((u) => u.scheme === "https");
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new ConfigError(`--${prefix}cert-file and --${prefix}key-file go together`);
  if (clientCertAuth && trustedCaFile === undefined)
    throw new ConfigError(`--${prefix}client-cert-auth needs --${prefix}trusted-ca-file`);
  if (certFile === undefined || keyFile === undefined) {
    if (https)
      throw new ConfigError(
        `https ${prefix === "" ? "client" : "peer"} URLs need --${prefix}cert-file and --${prefix}key-file`,
      );
    return undefined;
  }
  return { certFile, keyFile, trustedCaFile, clientCertAuth };
}
