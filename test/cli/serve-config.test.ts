/**
 * `leasehold serve` flags: etcd's names and defaults, a clear error for every
 * bad or contradictory combination, and member ids every member derives alike.
 */

import { describe, expect, it } from "vitest";
import { ConfigError, parseServeArgs } from "../../src/cli/serve-config.ts";

const three = [
  "--initial-cluster",
  "a=http://127.0.0.1:12380,b=http://127.0.0.1:22380,c=http://127.0.0.1:32380",
  "--initial-cluster-token",
  "t1",
];

describe("parseServeArgs", () => {
  it("defaults to one member on 127.0.0.1:2379 with data in default.leasehold", () => {
    const c = parseServeArgs([]);
    expect(c.name).toBe("default");
    expect(c.dataDir).toBe("default.leasehold");
    expect(c.listenClientUrls).toEqual([
      { url: "http://127.0.0.1:2379", scheme: "http", host: "127.0.0.1", port: 2379 },
    ]);
    expect(c.listenPeerUrls[0]!.port).toBe(2380);
    expect(c.initialCluster.map((m) => m.name)).toEqual(["default"]);
    expect(c.memberId).toBe(c.initialCluster[0]!.id);
    expect(c.heartbeatIntervalMs).toBe(100);
    expect(c.electionTimeoutMs).toBe(1000);
    expect(c.snapshotCount).toBe(100000);
    expect(c.initialClusterState).toBe("new");
    expect(c.clientTls).toBeUndefined();
  });

  it("takes --flag value and --flag=value alike, and the data dir follows --name", () => {
    const c = parseServeArgs([
      "--name=b",
      ...three,
      "--initial-advertise-peer-urls",
      "http://127.0.0.1:22380",
    ]);
    expect(c.name).toBe("b");
    expect(c.dataDir).toBe("b.leasehold");
    expect(c.initialCluster).toHaveLength(3);
  });

  it("derives the same member and cluster ids on every member, distinct per member", () => {
    const a = parseServeArgs([
      "--name",
      "a",
      ...three,
      "--initial-advertise-peer-urls",
      "http://127.0.0.1:12380",
    ]);
    const b = parseServeArgs([
      "--name",
      "b",
      ...three,
      "--initial-advertise-peer-urls",
      "http://127.0.0.1:22380",
    ]);
    expect(a.initialCluster.map((m) => m.id)).toEqual(b.initialCluster.map((m) => m.id));
    expect(a.clusterId).toBe(b.clusterId);
    expect(a.memberId).not.toBe(b.memberId);
    for (const m of a.initialCluster) expect(m.id > 0 && Number.isSafeInteger(m.id)).toBe(true);
    const other = parseServeArgs([
      "--name",
      "a",
      ...three.slice(0, 2),
      "--initial-cluster-token",
      "t2",
      "--initial-advertise-peer-urls",
      "http://127.0.0.1:12380",
    ]);
    expect(other.clusterId).not.toBe(a.clusterId);
  });

  const bad: [string, string[], RegExp][] = [
    ["an unknown flag", ["--nmae", "x"], /Unknown option '--nmae'/],
    ["a name missing from the cluster", ["--name", "z", ...three], /no member named "z"/],
    ["advertise URLs that disagree with the cluster", ["--name", "a", ...three], /must match/],
    ["a bad cluster state", ["--initial-cluster-state", "old"], /"new" or "existing"/],
    ["a non-numeric heartbeat", ["--heartbeat-interval", "fast"], /whole number/],
    [
      "an election timeout under 5 heartbeats",
      ["--heartbeat-interval", "300", "--election-timeout", "1000"],
      /at least as 5 times/,
    ],
    ["an election timeout over 50 s", ["--election-timeout", "60000"], /less than 50 seconds/],
    ["a URL without a port", ["--listen-client-urls", "http://127.0.0.1"], /no port/],
    ["a URL with another scheme", ["--listen-client-urls", "unix://x:1"], /http or https/],
    ["a URL with a path", ["--listen-client-urls", "http://127.0.0.1:1/x"], /scheme:\/\/host:port only/],
    [
      "https without a certificate",
      ["--listen-client-urls", "https://127.0.0.1:2379"],
      /need --cert-file and --key-file/,
    ],
    ["a certificate without its key", ["--cert-file", "c.pem"], /go together/],
    [
      "client-cert-auth without a CA",
      ["--cert-file", "c", "--key-file", "k", "--client-cert-auth"],
      /needs --trusted-ca-file/,
    ],
    ["an empty name", ["--name", ""], /must not be empty/],
    ["a malformed cluster entry", ["--initial-cluster", "a"], /is not name=url/],
    [
      "one peer URL for two members",
      [
        "--initial-cluster",
        "a=http://127.0.0.1:1,b=http://127.0.0.1:1",
        "--name",
        "a",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:1",
      ],
      /given for both a and b/,
    ],
  ];
  for (const [what, args, message] of bad) {
    it(`refuses ${what}`, () => {
      expect(() => parseServeArgs(args)).toThrow(ConfigError);
      expect(() => parseServeArgs(args)).toThrow(message);
    });
  }
});

describe("--quota-backend-bytes (etcd's flag)", () => {
  it("is 0 (etcd's default quota) when absent; takes any whole number, negative meaning no quota", () => {
    expect(parseServeArgs([]).quotaBackendBytes).toBe(0);
    expect(parseServeArgs(["--quota-backend-bytes", "100000"]).quotaBackendBytes).toBe(100000);
    expect(parseServeArgs(["--quota-backend-bytes=-1"]).quotaBackendBytes).toBe(-1);
    for (const bad of ["1.5", "2GiB", "", "99999999999999999999"])
      expect(() => parseServeArgs([`--quota-backend-bytes=${bad}`])).toThrow(ConfigError);
  });
});

describe("--auth-token and --auth-token-ttl (etcd's flags)", () => {
  it("takes simple tokens with a TTL in seconds (default 300), and refuses JWT and bad TTLs", () => {
    expect(parseServeArgs([]).authTokenTtlSeconds).toBe(300);
    expect(parseServeArgs(["--auth-token", "simple", "--auth-token-ttl", "60"]).authTokenTtlSeconds).toBe(60);
    expect(() => parseServeArgs(["--auth-token", "jwt,pub-key=x"])).toThrow(/not supported/);
    for (const bad of ["0", "-5", "x", "1.5"])
      expect(() => parseServeArgs([`--auth-token-ttl=${bad}`])).toThrow(ConfigError);
  });
});
