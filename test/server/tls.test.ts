/**
 * TLS on client URLs, as etcd has it: --cert-file/--key-file serve https, and
 * --client-cert-auth with --trusted-ca-file requires a client certificate that
 * CA signed. etcdctl with the right files gets through; without them it does
 * not. (The certificates are the transport tests' fixtures: a CA and a member
 * certificate for 127.0.0.1 usable for server and client auth.)
 */

import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MemberProcess } from "../support/process.ts";
import { etcdctl, freePort, killAll, removeDir, startMember, tempDir } from "../support/process.ts";

const fixture = (name: string) => fileURLToPath(new URL(`../transport/fixtures/${name}`, import.meta.url));
let member: MemberProcess;
let dir: string;
let url: string;

beforeAll(async () => {
  dir = tempDir("tls");
  const clientPort = await freePort();
  const peer = `http://127.0.0.1:${await freePort()}`;
  url = `https://127.0.0.1:${clientPort}`;
  member = await startMember("t1", dir, clientPort, [
    "--listen-client-urls",
    url,
    "--advertise-client-urls",
    url,
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `t1=${peer}`,
    "--cert-file",
    fixture("member.crt"),
    "--key-file",
    fixture("member.key"),
    "--client-cert-auth",
    "--trusted-ca-file",
    fixture("ca.crt"),
  ]);
});

afterAll(async () => {
  await killAll();
  removeDir(dir);
});

describe("client TLS", () => {
  it("serves etcdctl with the CA and a client certificate, and refuses it without", async () => {
    const tls = [
      "--cacert",
      fixture("ca.crt"),
      "--cert",
      fixture("member.crt"),
      "--key",
      fixture("member.key"),
    ];
    expect((await etcdctl(url, [...tls, "put", "secure", "yes"])).stdout).toBe("OK\n");
    expect((await etcdctl(url, [...tls, "get", "secure", "--print-value-only"])).stdout).toBe("yes\n");
    const noClientCert = await etcdctl(url, [
      "--cacert",
      fixture("ca.crt"),
      "--command-timeout=2s",
      "get",
      "secure",
    ]);
    expect(noClientCert.code).not.toBe(0);
    const plain = await etcdctl(member.endpoint, ["--command-timeout=2s", "get", "secure"]);
    expect(plain.code).not.toBe(0);
  });
});
