/**
 * MemberAdd/MemberUpdate peer URL validation (etcdctl checks URLs itself, so
 * the multi-process test cannot send a bad one): what etcd's types.NewURLs
 * accepts is accepted, normalized and sorted; everything else is
 * "etcdserver: given member URLs are invalid".
 */

import { describe, expect, it } from "vitest";
import { parsePeerUrls } from "../../src/api/cluster.ts";
import { RequestRejected } from "../../src/api/convert.ts";

describe("peer URLs of MemberAdd", () => {
  it("accepts http(s)://host:port lists, normalized and sorted", () => {
    expect(parsePeerUrls(["https://b:2", "http://A:1/"])).toEqual(["http://a:1", "https://b:2"]);
    expect(parsePeerUrls(["http://[::1]:2380"])).toEqual(["http://[::1]:2380"]);
  });

  it("refuses missing ports, paths, other schemes, duplicates, non-strings and empty lists", () => {
    for (const bad of [
      [],
      undefined,
      ["http://127.0.0.1"],
      ["http://h:1/x"],
      ["http://h:1?q=1"],
      ["unix://h:1"],
      ["not a url"],
      ["http://h:1", "http://h:1"],
      [7],
      ["http://user@h:1"],
    ]) {
      let caught: unknown;
      try {
        parsePeerUrls(bad);
      } catch (e) {
        caught = e;
      }
      expect(caught, JSON.stringify(bad)).toBeInstanceOf(RequestRejected);
      expect((caught as RequestRejected).error).toBe("MemberBadURLs");
    }
  });
});
