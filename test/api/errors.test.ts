/**
 * Pins the etcd error catalogue: every name, gRPC code and exact message, and
 * the watch cancel reasons, against test/api/testdata/errors.golden.
 * `REWRITE=1 npx vitest run test/api` rewrites the golden file; review the diff
 * against etcd 3.4's rpctypes/error.go — a changed message breaks clients.
 */

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Metadata, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  ETCD_ERROR_NAMES,
  ETCD_ERRORS,
  etcdErrorByMessage,
  etcdErrorSpec,
  etcdServiceError,
  GO_STATUS_CODE_NAMES,
  goStatusErrorText,
  WATCH_CANCEL_REASONS,
} from "../../src/api/index.ts";

const GOLDEN = join(import.meta.dirname, "testdata", "errors.golden");

/** The golden text: one line per entry, columns aligned, messages as JSON strings. */
function renderCatalogue(): string {
  const nameWidth = Math.max(...ETCD_ERROR_NAMES.map((n) => n.length));
  const etcdWidth = Math.max(...ETCD_ERROR_NAMES.map((n) => ETCD_ERRORS[n].etcdName.length));
  const goWidth = Math.max(...GO_STATUS_CODE_NAMES.map((n) => n.length));
  const lines = [
    "# leasehold's etcd v3 error catalogue (src/api/errors.ts), checked against etcd v3.4.45.",
    "# name | gRPC code | Go code name | etcd identifier | first 3.4 release | exact status message",
    "# REWRITE=1 npx vitest run test/api regenerates this file; review the diff.",
    "",
    "[errors]",
  ];
  for (const name of ETCD_ERROR_NAMES) {
    const spec = etcdErrorSpec(name);
    lines.push(
      [
        name.padEnd(nameWidth),
        String(spec.code).padStart(2),
        GO_STATUS_CODE_NAMES[spec.code]!.padEnd(goWidth),
        spec.etcdName.padEnd(etcdWidth),
        (spec.since ?? "v3.4.0").padEnd(7),
        JSON.stringify(spec.message),
      ].join(" "),
    );
  }
  lines.push("", "[watch cancel reasons]");
  const reasonNames = Object.keys(WATCH_CANCEL_REASONS) as (keyof typeof WATCH_CANCEL_REASONS)[];
  const reasonWidth = Math.max(...reasonNames.map((n) => n.length));
  for (const name of reasonNames) {
    lines.push(`${name.padEnd(reasonWidth)} ${JSON.stringify(WATCH_CANCEL_REASONS[name])}`);
  }
  return `${lines.join("\n")}\n`;
}

describe("etcd error catalogue", () => {
  it("matches the golden file", () => {
    const actual = renderCatalogue();
    if (process.env.REWRITE === "1") {
      writeFileSync(GOLDEN, actual);
      return;
    }
    expect(actual).toBe(readFileSync(GOLDEN, "utf8"));
  });

  it("has one entry per message, every code a real gRPC status other than OK", () => {
    const messages = ETCD_ERROR_NAMES.map((n) => ETCD_ERRORS[n].message);
    expect(new Set(messages).size).toBe(messages.length);
    const etcdNames = ETCD_ERROR_NAMES.map((n) => ETCD_ERRORS[n].etcdName);
    expect(new Set(etcdNames).size).toBe(etcdNames.length);
    for (const name of ETCD_ERROR_NAMES) {
      const { code, message } = ETCD_ERRORS[name];
      expect(code, name).toBeGreaterThan(status.OK);
      expect(code, name).toBeLessThanOrEqual(status.UNAUTHENTICATED);
      expect(message, name).toBe(message.trim());
    }
    expect(GO_STATUS_CODE_NAMES).toHaveLength(status.UNAUTHENTICATED + 1);
  });

  it("pins the strings clients map most often", () => {
    expect(ETCD_ERRORS.LeaseNotFound).toMatchObject({
      code: status.NOT_FOUND,
      message: "etcdserver: requested lease not found",
    });
    expect(ETCD_ERRORS.Compacted).toMatchObject({
      code: status.OUT_OF_RANGE,
      message: "etcdserver: mvcc: required revision has been compacted",
    });
    expect(ETCD_ERRORS.NoLeader).toMatchObject({
      code: status.UNAVAILABLE,
      message: "etcdserver: no leader",
    });
    expect(ETCD_ERRORS.RequestTooLarge).toMatchObject({
      code: status.INVALID_ARGUMENT,
      message: "etcdserver: request is too large",
    });
  });

  it("maps a message back to its name, and nothing else", () => {
    for (const name of ETCD_ERROR_NAMES) expect(etcdErrorByMessage(ETCD_ERRORS[name].message)).toBe(name);
    expect(etcdErrorByMessage("etcdserver: no leader ")).toBeUndefined();
    expect(etcdErrorByMessage(goStatusErrorText("NoLeader"))).toBeUndefined();
  });

  it("builds a grpc-js ServiceError whose details are the exact message", () => {
    const err = etcdServiceError("LeaseExist");
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.details).toBe("etcdserver: lease already exists");
    expect(err.message).toBe("etcdserver: lease already exists");
    expect(err.metadata.getMap()).toEqual({});
    const trailers = new Metadata();
    trailers.set("x-leasehold", "1");
    expect(etcdServiceError("NoLeader", { metadata: trailers }).metadata).toBe(trailers);
  });

  it("renders Go status error texts as grpc-go does", () => {
    expect(goStatusErrorText("PermissionDenied")).toBe(
      "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
    );
    expect(goStatusErrorText("WatchCanceled")).toBe(
      "rpc error: code = Canceled desc = etcdserver: watch canceled",
    );
  });
});
