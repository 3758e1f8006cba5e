/**
 * etcd auth with etcdctl (etcd 3.4's) against one real `leasehold serve`
 * process: users, roles, permissions on a prefix, a range and from a key on,
 * `auth enable` (etcdctl adds the root role itself when root lacks it), then
 * `--user` calls allowed and denied, and `auth disable`. Each expected output
 * is what etcdctl printed against etcd 3.4.23 for the same session, except
 * where release-3.4 changed the server since (noted at the line).
 */

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EtcdctlResult, MemberProcess } from "../support/process.ts";
import {
  etcdctl,
  freePort,
  killAll,
  removeDir,
  restartMember,
  startMember,
  tempDir,
  terminate,
} from "../support/process.ts";

let member: MemberProcess;
let dir: string;
const ctl = (args: string[]) => etcdctl(member.endpoint, args);
const asU = (args: string[]) => ctl(["--user", "u:p", ...args]);
const asRoot = (args: string[]) => ctl(["--user", "root:pw", ...args]);

/** etcdctl's failure: its exit code and the "Error: …" line it ends with. */
function failure(r: EtcdctlResult): string {
  const last = r.stderr.trim().split("\n").at(-1) ?? "";
  return `${r.code} ${last}`;
}

beforeAll(async () => {
  dir = tempDir("auth-etcdctl");
  const peer = `http://127.0.0.1:${await freePort()}`;
  member = await startMember("m1", dir, await freePort(), [
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `m1=${peer}`,
  ]);
});

afterAll(async () => {
  await killAll();
  removeDir(dir);
});

describe("etcdctl user, role and auth", () => {
  it("sets up users and roles, enables auth, and checks every call against them", async () => {
    expect((await ctl(["user", "add", "root:pw"])).stdout).toBe("User root created\n");
    expect((await ctl(["role", "add", "foo"])).stdout).toBe("Role foo created\n");
    for (const grant of [
      ["readwrite", "--prefix", "k/"],
      ["read", "a", "b"],
      ["write", "--from-key", "z"],
    ])
      expect((await ctl(["role", "grant-permission", "foo", ...grant])).stdout).toBe("Role foo updated\n");
    expect((await ctl(["user", "add", "u:p"])).stdout).toBe("User u created\n");
    expect((await ctl(["user", "grant-role", "u", "foo"])).stdout).toBe("Role foo is granted to user u\n");
    expect((await ctl(["role", "get", "foo"])).stdout).toBe(
      "Role foo\nKV Read:\n\t[a, b) (prefix a)\n\t[k/, k0) (prefix k/)\nKV Write:\n\t[k/, k0) (prefix k/)\n\t[z, <open ended>\n",
    );
    expect((await ctl(["user", "get", "u"])).stdout).toBe("User: u\nRoles: foo\n");
    expect((await ctl(["user", "list"])).stdout).toBe("root\nu\n");

    // root has no root role yet: etcdctl adds the role, grants it and enables again.
    const enable = await ctl(["auth", "enable"]);
    expect(enable.stdout, enable.stderr).toBe("Authentication Enabled\n");
    expect((await asRoot(["role", "list"])).stdout).toBe("foo\nroot\n");
    expect((await asRoot(["user", "get", "root"])).stdout).toBe("User: root\nRoles: root\n");

    expect(failure(await ctl(["role", "list"]))).toBe("1 Error: etcdserver: user name is empty");
    expect(failure(await ctl(["get", "k/1"]))).toBe("1 Error: etcdserver: user name is empty");
    expect(failure(await ctl(["--user", "u:wrong", "get", "k/1"]))).toBe(
      "2 Error: etcdserver: authentication failed, invalid user ID or password",
    );

    expect((await asU(["put", "k/1", "v"])).stdout).toBe("OK\n");
    expect((await asU(["get", "k/1"])).stdout).toBe("k/1\nv\n");
    expect((await asU(["get", "k/", "--prefix"])).stdout).toBe("k/1\nv\n");
    expect((await asU(["put", "zz", "w"])).stdout).toBe("OK\n");
    expect(failure(await asU(["get", "zz"]))).toBe("1 Error: etcdserver: permission denied");
    expect(failure(await asU(["put", "x", "v"]))).toBe("1 Error: etcdserver: permission denied");
    expect(failure(await asU(["get", "x"]))).toBe("1 Error: etcdserver: permission denied");
    expect(failure(await asU(["get", "k", "--prefix"]))).toBe("1 Error: etcdserver: permission denied");
    expect(failure(await asU(["del", "a"]))).toBe("1 Error: etcdserver: permission denied");
    // release-3.4 made compaction root's (etcd 3.4.23 still let any user compact).
    expect(failure(await asU(["compact", "1"]))).toBe("1 Error: etcdserver: permission denied");

    // etcdctl prints the server's cancel_reason, then gives up (both on stderr).
    const watch = await asU(["watch", "x"]);
    expect(watch.stdout).toBe("");
    expect(watch.stderr).toContain(
      "watch was canceled (rpc error: code = PermissionDenied desc = etcdserver: permission denied)\n",
    );
    expect(failure(watch)).toBe("5 Error: watch is canceled by the server");

    expect((await asU(["user", "get", "u"])).stdout).toBe("User: u\nRoles: foo\n");
    expect(failure(await asU(["user", "list"]))).toBe("1 Error: etcdserver: permission denied");
    expect(failure(await asU(["role", "get", "root"]))).toBe("1 Error: etcdserver: permission denied");
    expect(failure(await asRoot(["user", "delete", "root"]))).toBe(
      "1 Error: etcdserver: invalid auth management",
    );
    expect(failure(await asRoot(["role", "revoke-permission", "foo", "nope"]))).toBe(
      "1 Error: etcdserver: permission is not granted to the role",
    );
    expect((await asRoot(["get", "x"])).stdout).toBe("");

    // The auth state is replicated state: it survives a restart (log replay).
    await terminate(member);
    await restartMember(member);
    expect((await asU(["get", "k/1"])).stdout).toBe("k/1\nv\n");
    expect(failure(await asU(["get", "x"]))).toBe("1 Error: etcdserver: permission denied");
    expect(failure(await ctl(["get", "k/1"]))).toBe("1 Error: etcdserver: user name is empty");

    expect(failure(await asU(["auth", "disable"]))).toBe("1 Error: etcdserver: permission denied");
    expect((await asRoot(["auth", "disable"])).stdout).toBe("Authentication Disabled\n");
    expect((await ctl(["get", "k/1"])).stdout).toBe("k/1\nv\n");
    expect((await ctl(["put", "x", "anyone"])).stdout).toBe("OK\n");
  });
});
