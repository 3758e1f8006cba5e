/**
 * The etcd3 npm client over TLS against leasehold and against a real etcd
 * 3.4 started with the same flags, side by side (issue 5 §2):
 *
 * - server TLS (--cert-file, --key-file): a client that trusts the CA
 *   (`credentials: {rootCertificate}`) uses KV, Watch and Lease; a client that
 *   does not trust it, and a plaintext client, are refused;
 * - client certificate authentication (also --client-cert-auth and
 *   --trusted-ca-file): a client with the CA's certificate and key
 *   (`credentials: {rootCertificate, certChain, privateKey}`) gets through;
 *   one without a client certificate, or with a certificate the CA did not
 *   sign, is refused; with auth enabled, the certificate's common name is the
 *   user name (etcd's rule), so that client has its user's permissions
 *   without a password.
 *
 * Certificates: the transport tests' fixtures (test/transport/fixtures: a CA,
 * a member certificate for 127.0.0.1 with server and client usages, CN
 * "leasehold test member", and a self-signed rogue one). Same expectations on
 * both servers; the normalized transcripts must be equal (see differential.ts).
 */

import { readFileSync } from "node:fs";
import { Etcd3, EtcdPermissionDeniedError, type IOptions, type IWatchResponse } from "etcd3";
import { describe, expect } from "vitest";
import type { Scenario, Target } from "./differential.ts";
import { clientCredentials, differentialSuite, EventQueue, rejection, TLS_FILES } from "./differential.ts";

/** The user etcd takes from the fixture certificate's CN. */
const CN_USER = "leasehold test member";
const ROOT = { username: "root", password: "root-pw" };

/** Bounds a refused client's calls (its channel never becomes ready). */
const REFUSED_CALL_MS = 5_000;

/** The error of one read by a client that must be refused (fails if it is served); closes the client. */
async function refused(url: string, options: Omit<IOptions, "hosts">): Promise<Error> {
  const client = new Etcd3({
    ...options,
    hosts: url,
    defaultCallOptions: () => ({ deadline: Date.now() + REFUSED_CALL_MS }),
  });
  try {
    return await rejection(client.get("tls/k").exec(), "a read by a client that must be refused");
  } finally {
    client.close();
  }
}

/** KV, a watch event and a lease keepalive through `client`. */
async function useOverTls(t: Target, client: Etcd3): Promise<unknown> {
  const watcher = await client.watch().key("tls/k").create();
  const events = new EventQueue<IWatchResponse>(watcher, "data", (r: IWatchResponse) => r);
  await client.put("tls/k").value(`over tls to ${t.server}`.length);
  expect(await client.get("tls/k").number()).toBe(`over tls to ${t.server}`.length);
  const event = (await events.next()).events[0]!;
  expect(event.type).toBe("Put");
  const lease = client.lease(30, { autoKeepAlive: false });
  const ka = await lease.keepaliveOnce();
  expect(ka.TTL).toBe("30");
  await lease.revoke();
  await watcher.cancel();
  return { event: { type: event.type, key: event.kv.key, version: event.kv.version }, keepaliveTtl: ka.TTL };
}

/** A client that trusts only the rogue certificate (so not the server's), and a plaintext client. */
function refusedScenarios(scenario: Scenario, withClientCert: boolean): void {
  scenario("tls: a client that does not trust the server's certificate is refused", async (t, log) => {
    const rootCertificate = readFileSync(TLS_FILES.rogueCert);
    await refused(t.url, { credentials: { ...clientCredentials(withClientCert), rootCertificate } });
    log.add("untrusted server", "refused");
  });

  scenario("tls: a plaintext client is refused", async (t, log) => {
    await refused(t.url.replace(/^https:/, "http:"), {});
    log.add("plaintext", "refused");
  });
}

describe("server TLS (--cert-file, --key-file)", () => {
  differentialSuite(
    {
      label: "tls",
      tls: { certFile: TLS_FILES.cert, keyFile: TLS_FILES.key },
      clientOptions: { credentials: clientCredentials(false) },
    },
    (scenario) => {
      scenario("tls: a client that trusts the CA uses KV, Watch and Lease", async (t, log) => {
        expect(t.url).toMatch(/^https:/);
        log.add("used", await useOverTls(t, t.client));
      });
      refusedScenarios(scenario, false);
    },
  );
});

describe("client certificate authentication (--client-cert-auth, --trusted-ca-file)", () => {
  differentialSuite(
    {
      label: "mtls",
      tls: {
        certFile: TLS_FILES.cert,
        keyFile: TLS_FILES.key,
        trustedCaFile: TLS_FILES.ca,
        clientCertAuth: true,
      },
      clientOptions: { credentials: clientCredentials(true) },
    },
    (scenario) => {
      scenario("mtls: a client with a certificate the CA signed uses KV, Watch and Lease", async (t, log) => {
        log.add("used", await useOverTls(t, t.client));
      });

      scenario("mtls: a client without a client certificate is refused", async (t, log) => {
        await refused(t.url, { credentials: clientCredentials(false) });
        log.add("no client certificate", "refused");
      });

      scenario("mtls: a client whose certificate the CA did not sign is refused", async (t, log) => {
        await refused(t.url, {
          credentials: {
            rootCertificate: readFileSync(TLS_FILES.ca),
            certChain: readFileSync(TLS_FILES.rogueCert),
            privateKey: readFileSync(TLS_FILES.rogueKey),
          },
        });
        log.add("rogue client certificate", "refused");
      });

      refusedScenarios(scenario, true);

      scenario("mtls + auth: the certificate's common name is the user name", async (t, log) => {
        const { client } = t;
        await client.put("cn/readable").value("r");
        await client.put("other/k").value("o");
        await client.user(ROOT.username).create(ROOT.password);
        await client.user(ROOT.username).addRole("root");
        const reader = await client.role("cn-reader").create();
        await reader.grant({ permission: "Read", range: client.range({ prefix: "cn/" }) });
        await client.user(CN_USER).create("unused-password");
        await client.user(CN_USER).addRole("cn-reader");
        await client.auth.authEnable({});
        const root = t.connect({ credentials: clientCredentials(true), auth: ROOT });
        try {
          // No password: the server takes the user from the certificate.
          expect(await client.get("cn/readable").string()).toBe("r");
          const write = await rejection(
            client.put("cn/readable").value("w").exec(),
            "a write as the CN user",
          );
          expect(write).toBeInstanceOf(EtcdPermissionDeniedError);
          log.add("write as the CN user", write);
          const other = await rejection(client.get("other/k").exec(), "a read outside the CN user's prefix");
          expect(other).toBeInstanceOf(EtcdPermissionDeniedError);
          log.add("read outside the CN user's prefix", other);
          // A password token takes precedence over the certificate.
          expect(await root.get("other/k").string()).toBe("o");
        } finally {
          log.add("disable", await root.auth.authDisable({}));
        }
        expect(await client.get("other/k").string()).toBe("o");
      });
    },
  );
});
