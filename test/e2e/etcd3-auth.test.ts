/**
 * The etcd3 npm client's users, roles and authentication against leasehold
 * and against a real etcd 3.4, side by side (issue 5 §2): users and roles
 * created and granted before auth is enabled, with etcd's errors mapped to
 * etcd3's typed errors; auth enabled through the root user; clients with
 * `auth: {username, password}` allowed what their roles grant and denied the
 * rest (reads, writes, transactions, watches, user management); bad
 * credentials; permissions revoked and passwords changed while clients run;
 * auth disabled again. The scenarios run in order on the same two servers.
 * Same expectations on both servers; the normalized transcripts must be equal
 * (see differential.ts).
 */

import {
  type Etcd3,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  EtcdRoleExistsError,
  EtcdRoleNotFoundError,
  EtcdRoleNotGrantedError,
  EtcdUserExistsError,
  EtcdUserNotFoundError,
  GRPCFailedPreconditionError,
} from "etcd3";
import { expect } from "vitest";
import type { Target } from "./differential.ts";
import { differentialSuite, rejection } from "./differential.ts";

const ROOT = { username: "root", password: "root-pw" };
const ALICE = { username: "alice", password: "alice-pw" };

const asRoot = (t: Target): Etcd3 => t.connect({ auth: ROOT });

differentialSuite({}, (scenario) => {
  scenario(
    "auth: users and roles before auth is enabled, and etcd's errors for them",
    async ({ client }, log) => {
      await log.baseFrom(client);
      const noRoot = await rejection(client.auth.authEnable({}));
      expect(noRoot).toBeInstanceOf(GRPCFailedPreconditionError);
      expect(noRoot.message).toContain("etcdserver: root user does not exist");
      log.add("enable without a root user", noRoot);

      await client.user(ROOT.username).create(ROOT.password);
      const noRootRole = await rejection(client.auth.authEnable({}));
      expect(noRootRole).toBeInstanceOf(GRPCFailedPreconditionError);
      expect(noRootRole.message).toContain("etcdserver: root user does not have root role");
      log.add("enable without the root role", noRootRole);
      await client.user(ROOT.username).addRole("root");

      const reader = await client.role("reader").create();
      await reader.grant({ permission: "Read", range: client.range({ prefix: "x/" }) });
      const writer = await client.role("writer").create();
      await writer.grant({ permission: "Readwrite", key: "w/k" });
      const alice = await client.user(ALICE.username).create(ALICE.password);
      await alice.addRole(reader);

      const errors: [string, Error, new (...args: never[]) => Error, string][] = [
        [
          "user exists",
          await rejection(client.user("alice").create("x")),
          EtcdUserExistsError,
          "etcdserver: user name already exists",
        ],
        [
          "role exists",
          await rejection(client.role("reader").create()),
          EtcdRoleExistsError,
          "etcdserver: role name already exists",
        ],
        [
          "grant a role to a missing user",
          await rejection(client.user("nobody").addRole("reader")),
          EtcdUserNotFoundError,
          "etcdserver: user name not found",
        ],
        [
          "grant a missing role",
          await rejection(client.user("alice").addRole("nosuch")),
          EtcdRoleNotFoundError,
          "etcdserver: role name not found",
        ],
        [
          "revoke a role not granted",
          await rejection(client.user("alice").removeRole("writer")),
          EtcdRoleNotGrantedError,
          "etcdserver: role is not granted to the user",
        ],
        [
          "delete a missing user",
          await rejection(client.user("nobody").delete()),
          EtcdUserNotFoundError,
          "etcdserver: user name not found",
        ],
        [
          "permissions of a missing role",
          await rejection(client.role("nosuch").permissions()),
          EtcdRoleNotFoundError,
          "etcdserver: role name not found",
        ],
      ];
      for (const [label, err, type, message] of errors) {
        expect(err, label).toBeInstanceOf(type);
        expect(err.message, label).toContain(message);
        log.add(label, err);
      }
      const emptyName = await rejection(client.user("").create("pw"));
      log.add("user with an empty name", emptyName);

      expect((await client.getUsers()).map((u) => u.name)).toEqual(["alice", "root"]);
      const roles = (await client.getRoles()).map((r) => r.name);
      expect(roles).toEqual(expect.arrayContaining(["reader", "writer"]));
      log.add("roles", roles);
      expect((await alice.roles()).map((r) => r.name)).toEqual(["reader"]);
      log.add("reader permissions", await reader.permissions());
      log.add("writer permissions", await writer.permissions());
      log.add("user get alice", await client.auth.userGet({ name: "alice" }));
      log.add("role get writer", await client.auth.roleGet({ role: "writer" }));
    },
  );

  scenario("auth: enabled; a password client gets what its roles grant and nothing else", async (t, log) => {
    log.add("enable", await t.client.auth.authEnable({}));
    const root = asRoot(t);
    await log.baseFrom(root);
    await root.put("x/a").value("1");
    await root.put("y/a").value("2");
    await root.put("w/k").value("w");
    const alice = t.connect({ auth: ALICE });

    expect(await alice.get("x/a").string()).toBe("1");
    expect(await alice.getAll().prefix("x/").keys()).toEqual(["x/a"]);
    log.add("alice reads x/a", await alice.get("x/a").exec());

    const denied: [string, () => Promise<unknown>][] = [
      ["write in a read-only prefix", () => alice.put("x/a").value("2").exec()],
      ["read outside the prefix", () => alice.get("y/a").exec()],
      ["read a range wider than the prefix", () => alice.getAll().prefix("x").exec()],
      ["delete in a read-only prefix", () => alice.delete().key("x/a").exec()],
      [
        "txn with a forbidden write",
        () => alice.if("x/a", "Value", "==", "1").then(alice.put("y/a").value("3")).commit(),
      ],
      ["add a user", () => alice.user("eve").create("eve-pw")],
      ["disable auth", () => alice.auth.authDisable({})],
    ];
    for (const [label, call] of denied) {
      const err = await rejection(call(), label);
      expect(err, label).toBeInstanceOf(EtcdPermissionDeniedError);
      expect(err.message, label).toContain("etcdserver: permission denied");
      log.add(label, err);
    }
    expect(await root.get("x/a").string()).toBe("1");
    expect(await root.get("y/a").string()).toBe("2");

    const watchDenied = await rejection(alice.watch().key("y/a").create(), "watch outside the prefix");
    expect(watchDenied).toBeInstanceOf(EtcdPermissionDeniedError);
    log.add("watch outside the prefix", watchDenied);

    const anonymous = await rejection(t.client.get("x/a").exec(), "an anonymous read");
    log.add("anonymous read", anonymous);

    for (const [label, auth] of [
      ["wrong password", { username: "alice", password: "wrong" }],
      ["unknown user", { username: "mallory", password: "alice-pw" }],
    ] as const) {
      const err = await rejection(t.connect({ auth }).get("x/a").exec(), label);
      expect(err, label).toBeInstanceOf(EtcdAuthenticationFailedError);
      expect(err.message, label).toContain("etcdserver: authentication failed, invalid user ID or password");
      log.add(label, err);
    }

    // A role granted while alice's client runs applies to its next request.
    await root.user("alice").addRole("writer");
    await alice.put("w/k").value("by alice");
    expect(await root.get("w/k").string()).toBe("by alice");
    const notW = await rejection(alice.put("w/k2").value("x").exec(), "a write outside writer's key");
    expect(notW).toBeInstanceOf(EtcdPermissionDeniedError);

    // A permission revoked applies at once.
    await root.role("reader").revoke({ permission: "Read", range: root.range({ prefix: "x/" }) });
    const revoked = await rejection(alice.get("x/a").exec(), "a read after the permission was revoked");
    expect(revoked).toBeInstanceOf(EtcdPermissionDeniedError);
    log.add("read after the permission was revoked", revoked);
    log.add("reader permissions after revoke", await root.role("reader").permissions());

    // A changed password: the old one fails, the new one works.
    await root.user("alice").setPassword("alice-new");
    const old = await rejection(t.connect({ auth: ALICE }).get("w/k").exec(), "the old password");
    expect(old).toBeInstanceOf(EtcdAuthenticationFailedError);
    expect(
      await t
        .connect({ auth: { username: "alice", password: "alice-new" } })
        .get("w/k")
        .string(),
    ).toBe("by alice");
  });

  scenario(
    "auth: root deletes users and roles and disables auth; anonymous clients work again",
    async (t, log) => {
      const root = asRoot(t);
      await log.baseFrom(root);
      await root.user("alice").delete();
      await root.role("writer").delete();
      expect((await root.getUsers()).map((u) => u.name)).toEqual(["root"]);
      const gone = await rejection(
        t
          .connect({ auth: { username: "alice", password: "alice-new" } })
          .get("w/k")
          .exec(),
      );
      expect(gone).toBeInstanceOf(EtcdAuthenticationFailedError);
      log.add("deleted user", gone);
      log.add("disable", await root.auth.authDisable({}));
      expect(await t.client.get("x/a").string()).toBe("1");
      expect(await t.client.get("y/a").string()).toBe("2");
      await t.client.put("y/a").value("anonymous");
      expect(await t.client.get("y/a").string()).toBe("anonymous");
    },
  );
});
