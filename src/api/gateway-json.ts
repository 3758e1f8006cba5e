/**
 * The JSON side of the HTTP gateway (gateway.ts): a JSON reader with the
 * behaviour of Go's encoding/json Decoder, and the proto3 JSON mapping of
 * etcd 3.4's grpc-gateway (runtime.JSONPb{OrigName: true} over golang/protobuf
 * jsonpb), driven by protobufjs reflection over the same .proto files the
 * gRPC services load, so every message type is covered without a list.
 *
 * Contract:
 * - `scanJsonValue` reads ONE value from a position, as a json.Decoder does:
 *   whitespace before it is skipped, nothing after it is looked at (a body
 *   may hold several values: streams send one request per value). Numbers
 *   keep their text (int64 must not pass through a double). A syntax error
 *   has Go's message ("unexpected EOF", "invalid character 'x' looking for
 *   beginning of value", ...).
 * - `messageFromJson` maps a value to the plain object proto-loader's
 *   serializer takes. Names: the .proto name (`range_end`) or its JSON name
 *   (`rangeEnd`); unknown names are ignored; null is "not set". int64 and
 *   uint64: a number or a string of digits; bytes: standard base64 with
 *   padding; enums: the value's name or its number. A oneof set twice keeps
 *   the last member. A value of the wrong kind fails with Go's message.
 * - `messageToJson` writes a decoded response as jsonpb does with
 *   EmitDefaults false: fields in declaration order under their .proto
 *   names, zero scalars and empty lists left out (a set oneof member is
 *   written even when zero, a present message even when empty), int64 and
 *   uint64 as strings, bytes as base64, enums by name; strings escaped as
 *   Go's encoder does (<, >, & as \u003c, \u003e, \u0026).
 */

import { isAbsolute, join } from "node:path";
import protobuf from "protobufjs";
import { assert } from "../raft/index.ts";
import { PROTO_FILES, PROTO_ROOT_DIR, type WireMessage } from "./proto.ts";

/** Deepest nesting of arrays and objects accepted in a request body (a bound on recursion). */
export const JSON_DEPTH_MAX = 512;

/** A parsed JSON value; numbers keep their literal text. */
export type JsonValue =
  | { readonly kind: "object"; readonly entries: readonly (readonly [string, JsonValue])[] }
  | { readonly kind: "array"; readonly items: readonly JsonValue[] }
  | { readonly kind: "string"; readonly value: string }
  | { readonly kind: "number"; readonly text: string }
  | { readonly kind: "bool"; readonly value: boolean }
  | { readonly kind: "null" };

/** What one `scanJsonValue` found. */
export type JsonScan =
  /** A complete value ending at `end` (exclusive). */
  | { readonly kind: "value"; readonly value: JsonValue; readonly end: number }
  /** Only whitespace up to the end of a final text (Go: io.EOF). */
  | { readonly kind: "eof" }
  /** The value is not complete yet: more text may come. */
  | { readonly kind: "incomplete" }
  | { readonly kind: "error"; readonly message: string };

/** A request body that does not map to the message; `message` is Go's text for the same input. */
export class GatewayJsonError extends Error {
  override readonly name = "GatewayJsonError";
}

// ------------------------------------------------------------------ reading

class Incomplete {}

/** A run of string characters that need no look: no quote, backslash or control character. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: JSON strings may not hold raw control characters; the run stops at them.
const PLAIN_RUN = /[^"\\\u0000-\u001f]*/y;

/** Go's quoteChar: how encoding/json names a byte in an error. */
function quoteChar(ch: string): string {
  if (ch === "'") return "'\\''";
  if (ch === '"') return `'"'`;
  const code = ch.charCodeAt(0);
  const named: Record<number, string> = {
    7: "\\a",
    8: "\\b",
    9: "\\t",
    10: "\\n",
    11: "\\v",
    12: "\\f",
    13: "\\r",
  };
  if (named[code] !== undefined) return `'${named[code]}'`;
  if (code === 0x5c) return "'\\\\'";
  if (code >= 0x20 && code < 0x7f) return `'${ch}'`;
  if (code < 0x80) return `'\\x${code.toString(16).padStart(2, "0")}'`;
  // Go scans bytes: a non-ASCII character is named by its first UTF-8 byte.
  const first = Buffer.from(ch)[0] ?? 0;
  return `'\\x${first.toString(16).padStart(2, "0")}'`;
}

class JsonReader {
  private i: number;
  private depth = 0;

  constructor(
    private readonly text: string,
    start: number,
    private readonly final: boolean,
  ) {
    this.i = start;
  }

  /** The whole scan: whitespace, then one value. */
  scan(): JsonScan {
    try {
      this.skipSpace();
      if (this.i >= this.text.length) return this.final ? { kind: "eof" } : { kind: "incomplete" };
      const value = this.value("looking for beginning of value");
      return { kind: "value", value, end: this.i };
    } catch (err) {
      if (err instanceof Incomplete) return { kind: "incomplete" };
      if (err instanceof GatewayJsonError) return { kind: "error", message: err.message };
      throw err;
    }
  }

  private skipSpace(): void {
    const t = this.text;
    while (this.i < t.length) {
      const c = t.charCodeAt(this.i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.i++;
    }
  }

  /** The next character; at the end of the text: more may come, or Go's "unexpected EOF". */
  private peek(): string {
    if (this.i < this.text.length) return this.text[this.i]!;
    if (this.final) throw new GatewayJsonError("unexpected EOF");
    throw new Incomplete();
  }

  private invalid(ch: string, context: string): GatewayJsonError {
    return new GatewayJsonError(`invalid character ${quoteChar(ch)} ${context}`);
  }

  private value(context: string): JsonValue {
    const c = this.peek();
    if (c === "{" || c === "[") {
      this.depth++;
      if (this.depth > JSON_DEPTH_MAX)
        throw new GatewayJsonError(`json: nesting deeper than ${JSON_DEPTH_MAX}`);
      const v = c === "{" ? this.object() : this.array();
      this.depth--;
      return v;
    }
    if (c === '"') return { kind: "string", value: this.string() };
    if (c === "-" || (c >= "0" && c <= "9")) return { kind: "number", text: this.number() };
    if (c === "t") return this.literal("true", { kind: "bool", value: true });
    if (c === "f") return this.literal("false", { kind: "bool", value: false });
    if (c === "n") return this.literal("null", { kind: "null" });
    throw this.invalid(c, context);
  }

  private object(): JsonValue {
    this.i++; // {
    const entries: [string, JsonValue][] = [];
    this.skipSpace();
    if (this.peek() === "}") {
      this.i++;
      return { kind: "object", entries };
    }
    for (;;) {
      this.skipSpace();
      const q = this.peek();
      if (q !== '"') throw this.invalid(q, "looking for beginning of object key string");
      const key = this.string();
      this.skipSpace();
      const colon = this.peek();
      if (colon !== ":") throw this.invalid(colon, "after object key");
      this.i++;
      this.skipSpace();
      entries.push([key, this.value("looking for beginning of value")]);
      this.skipSpace();
      const next = this.peek();
      this.i++;
      if (next === "}") return { kind: "object", entries };
      if (next !== ",") throw this.invalid(next, "after object key:value pair");
    }
  }

  private array(): JsonValue {
    this.i++; // [
    const items: JsonValue[] = [];
    this.skipSpace();
    if (this.peek() === "]") {
      this.i++;
      return { kind: "array", items };
    }
    for (;;) {
      this.skipSpace();
      items.push(this.value("looking for beginning of value"));
      this.skipSpace();
      const next = this.peek();
      this.i++;
      if (next === "]") return { kind: "array", items };
      if (next !== ",") throw this.invalid(next, "after array element");
    }
  }

  private string(): string {
    this.i++; // "
    let out = "";
    for (;;) {
      PLAIN_RUN.lastIndex = this.i;
      PLAIN_RUN.test(this.text);
      out += this.text.slice(this.i, PLAIN_RUN.lastIndex);
      this.i = PLAIN_RUN.lastIndex;
      const c = this.peek();
      this.i++;
      if (c === '"') return out;
      if (c < " ") throw this.invalid(c, "in string literal");
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = this.peek();
      this.i++;
      const simple: Record<string, string> = {
        '"': '"',
        "\\": "\\",
        "/": "/",
        b: "\b",
        f: "\f",
        n: "\n",
        r: "\r",
        t: "\t",
      };
      if (simple[e] !== undefined) out += simple[e];
      else if (e === "u") {
        let code = 0;
        for (let k = 0; k < 4; k++) {
          const h = this.peek();
          this.i++;
          const d = Number.parseInt(h, 16);
          if (!/[0-9a-fA-F]/.test(h)) throw this.invalid(h, "in \\u hexadecimal character escape");
          code = code * 16 + d;
        }
        out += String.fromCharCode(code);
      } else throw this.invalid(e, "in string escape code");
    }
  }

  private number(): string {
    const start = this.i;
    const t = this.text;
    const digits = (): number => {
      const from = this.i;
      while (this.i < t.length && t[this.i]! >= "0" && t[this.i]! <= "9") this.i++;
      return this.i - from;
    };
    // The end of the text inside a number: it may go on, unless the text is final.
    const atEnd = (): boolean => {
      if (this.i < t.length) return false;
      if (!this.final) throw new Incomplete();
      return true;
    };
    if (t[this.i] === "-") {
      this.i++;
      if (atEnd()) throw new GatewayJsonError("unexpected EOF");
      if (!(t[this.i]! >= "0" && t[this.i]! <= "9")) throw this.invalid(t[this.i]!, "in numeric literal");
    }
    if (t[this.i] === "0") this.i++;
    else digits();
    if (atEnd()) return t.slice(start, this.i);
    if (t[this.i] === ".") {
      this.i++;
      if (atEnd()) throw new GatewayJsonError("unexpected EOF");
      if (digits() === 0) throw this.invalid(t[this.i]!, "after decimal point in numeric literal");
      if (atEnd()) return t.slice(start, this.i);
    }
    if (t[this.i] === "e" || t[this.i] === "E") {
      this.i++;
      if (atEnd()) throw new GatewayJsonError("unexpected EOF");
      if (t[this.i] === "+" || t[this.i] === "-") this.i++;
      if (atEnd()) throw new GatewayJsonError("unexpected EOF");
      if (digits() === 0) throw this.invalid(t[this.i]!, "in exponent of numeric literal");
      atEnd();
    }
    return t.slice(start, this.i);
  }

  private literal(word: string, value: JsonValue): JsonValue {
    for (let k = 0; k < word.length; k++) {
      const c = this.peek();
      if (c !== word[k]) throw this.invalid(c, `in literal ${word} (expecting ${quoteChar(word[k]!)})`);
      this.i++;
    }
    return value;
  }
}

/**
 * Reads one JSON value from `text` at `start` (see the header). `final`: no
 * more text will come, so a value cut short is Go's "unexpected EOF"
 * rather than `incomplete`.
 */
export function scanJsonValue(text: string, start: number, final: boolean): JsonScan {
  return new JsonReader(text, start, final).scan();
}

// ------------------------------------------------------------------ the proto3 mapping

/** The etcd API's message types, loaded once from src/api/proto/ (the files the services load). */
let loadedRoot: protobuf.Root | undefined;

function root(): protobuf.Root {
  if (loadedRoot !== undefined) return loadedRoot;
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(PROTO_ROOT_DIR, target));
  r.loadSync([...PROTO_FILES], { keepCase: true });
  r.resolveAll();
  loadedRoot = r;
  return r;
}

/** The request and response types of a gRPC method, by path ("/etcdserverpb.KV/Range"). */
export function methodTypes(path: string): {
  readonly request: protobuf.Type;
  readonly response: protobuf.Type;
} {
  const m = /^\/([\w.]+)\/(\w+)$/.exec(path);
  assert(m !== null, `gateway: bad method path ${path}`);
  const method = root().lookupService(m[1]!).methods[m[2]!];
  assert(method !== undefined, `gateway: no method ${path} in the protos`);
  method.resolve();
  assert(
    method.resolvedRequestType !== null && method.resolvedResponseType !== null,
    `gateway: ${path} types unresolved`,
  );
  return { request: method.resolvedRequestType, response: method.resolvedResponseType };
}

/** protoc's JSON name: underscores dropped, the letter after each one upper-cased. */
function jsonName(name: string): string {
  return name.replace(/_(.)/g, (_m, c: string) => c.toUpperCase()).replace(/_$/, "");
}

/** Go's name of a generated type: package, then nested names joined by "_" (etcdserverpb.Compare_CompareResult). */
function goTypeName(t: protobuf.ReflectionObject): string {
  const nested: string[] = [];
  let o: protobuf.ReflectionObject | null = t;
  while (o !== null && (o instanceof protobuf.Type || o instanceof protobuf.Enum)) {
    nested.unshift(o.name);
    o = o.parent;
  }
  const pkg: string[] = [];
  while (o !== null && o.name !== "") {
    pkg.unshift(o.name);
    o = o.parent;
  }
  return `${pkg.join(".")}.${nested.join("_")}`;
}

const INT_RANGES: Readonly<Record<string, readonly [bigint, bigint, string]>> = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n, "int64"],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n, "int64"],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n, "int64"],
  uint64: [0n, 2n ** 64n - 1n, "uint64"],
  fixed64: [0n, 2n ** 64n - 1n, "uint64"],
  int32: [-(2n ** 31n), 2n ** 31n - 1n, "int32"],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n, "int32"],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n, "int32"],
  uint32: [0n, 2n ** 32n - 1n, "uint32"],
  fixed32: [0n, 2n ** 32n - 1n, "uint32"],
};

/** Go's Value name for a JSON value in "cannot unmarshal X into Go value of type T". */
function jsonKindName(v: JsonValue): string {
  return v.kind;
}

function cannotUnmarshal(v: JsonValue, goType: string): GatewayJsonError {
  return new GatewayJsonError(`json: cannot unmarshal ${jsonKindName(v)} into Go value of type ${goType}`);
}

/** An integer field: a number literal or a quoted one (jsonpb unquotes), in the type's range. */
function integerFromJson(v: JsonValue, range: readonly [bigint, bigint, string]): bigint {
  let text: string;
  if (v.kind === "number") text = v.text;
  else if (v.kind === "string") {
    // jsonpb unquotes and hands the text to json.Unmarshal, whose scanner ends the text with a space.
    const inner = v.value;
    const scan = scanJsonValue(`${inner} `, 0, true);
    if (scan.kind === "error" && scan.message !== "unexpected EOF") throw new GatewayJsonError(scan.message);
    if (scan.kind !== "value") throw new GatewayJsonError("unexpected end of JSON input");
    const rest = inner.slice(scan.end).trimStart();
    if (rest !== "")
      throw new GatewayJsonError(`invalid character ${quoteChar(rest[0]!)} after top-level value`);
    if (scan.value.kind === "null") return 0n;
    if (scan.value.kind !== "number") throw cannotUnmarshal(scan.value, range[2]);
    text = scan.value.text;
  } else throw cannotUnmarshal(v, range[2]);
  const [min, max, goType] = range;
  if (!/^-?\d+$/.test(text))
    throw new GatewayJsonError(`json: cannot unmarshal number ${text} into Go value of type ${goType}`);
  const n = BigInt(text);
  if (n < min || n > max)
    throw new GatewayJsonError(`json: cannot unmarshal number ${text} into Go value of type ${goType}`);
  return n;
}

const BASE64_ALPHABET = /[A-Za-z0-9+/]/;

/**
 * Go's base64.StdEncoding.Decode: standard alphabet, padding required, CR and
 * LF ignored; an error names the offset Go names.
 */
export function base64FromJson(s: string): Buffer {
  let clean = "";
  let j = 0; // position within the current 4-character quantum
  for (let si = 0; si < s.length; ) {
    const c = s[si]!;
    si++;
    if (c === "\n" || c === "\r") continue;
    if (BASE64_ALPHABET.test(c)) {
      clean += c;
      j = (j + 1) % 4;
      continue;
    }
    if (c !== "=" || j < 2) throw new GatewayJsonError(`illegal base64 data at input byte ${si - 1}`);
    // Padding: "==" after two characters, "=" after three, then only newlines.
    if (j === 2) {
      while (si < s.length && (s[si] === "\n" || s[si] === "\r")) si++;
      if (si === s.length) throw new GatewayJsonError(`illegal base64 data at input byte ${s.length}`);
      if (s[si] !== "=") throw new GatewayJsonError(`illegal base64 data at input byte ${si - 1}`);
      si++;
    }
    while (si < s.length && (s[si] === "\n" || s[si] === "\r")) si++;
    if (si < s.length) throw new GatewayJsonError(`illegal base64 data at input byte ${si}`);
    return Buffer.from(clean, "base64");
  }
  // A quantum cut short: Go names the length less the characters of that quantum.
  if (j !== 0) throw new GatewayJsonError(`illegal base64 data at input byte ${s.length - j}`);
  return Buffer.from(clean, "base64");
}

/** One value of a field (an element, for a repeated field) in proto-loader's serializer form. */
function fieldValueFromJson(field: protobuf.FieldBase, v: JsonValue): unknown {
  const t = field.resolvedType;
  if (t instanceof protobuf.Type) return messageFromJson(t, v);
  if (t instanceof protobuf.Enum) {
    if (v.kind === "string") {
      const n = Object.hasOwn(t.values, v.value) ? t.values[v.value] : undefined;
      if (n === undefined) throw new GatewayJsonError(`unknown value "${v.value}" for enum ${goTypeName(t)}`);
      return n;
    }
    if (v.kind === "number") return Number(integerFromJson(v, INT_RANGES.int32!));
    throw cannotUnmarshal(v, goTypeName(t));
  }
  const range = INT_RANGES[field.type];
  if (range !== undefined) {
    const n = integerFromJson(v, range);
    return field.long ? n.toString() : Number(n);
  }
  switch (field.type) {
    case "bool":
      if (v.kind !== "bool") throw cannotUnmarshal(v, "bool");
      return v.value;
    case "string":
      if (v.kind !== "string") throw cannotUnmarshal(v, "string");
      return v.value;
    case "bytes":
      if (v.kind !== "string") throw cannotUnmarshal(v, "[]uint8");
      return base64FromJson(v.value);
    case "double":
    case "float": {
      const goType = field.type === "double" ? "float64" : "float32";
      if (v.kind === "number") return Number(v.text);
      if (v.kind === "string") {
        if (v.value === "NaN" || v.value === "Infinity" || v.value === "-Infinity") return Number(v.value);
        const n = Number(v.value);
        if (v.value.trim() !== "" && Number.isFinite(n)) return n;
      }
      throw cannotUnmarshal(v, goType);
    }
    default:
      assert(false, `gateway: field type ${field.type} of ${field.fullName} not mapped`);
  }
}

/** A JSON value as the plain object proto-loader's serializer takes for `type` (see the header). */
export function messageFromJson(type: protobuf.Type, v: JsonValue): WireMessage {
  const out: WireMessage = {};
  if (v.kind === "null") return out;
  if (v.kind !== "object") throw cannotUnmarshal(v, "map[string]json.RawMessage");
  for (const [key, value] of v.entries) {
    const field = Object.hasOwn(type.fields, key)
      ? type.fields[key]
      : type.fieldsArray.find((f) => jsonName(f.name) === key);
    if (field === undefined || value.kind === "null") continue;
    if (field.map) {
      if (value.kind !== "object") throw cannotUnmarshal(value, "map[string]json.RawMessage");
      const m: Record<string, unknown> = Object.create(null);
      for (const [k, item] of value.entries) m[k] = fieldValueFromJson(field, item);
      out[field.name] = m;
    } else if (field.repeated) {
      if (value.kind !== "array") throw cannotUnmarshal(value, "[]json.RawMessage");
      out[field.name] = value.items.map((item) => fieldValueFromJson(field, item));
    } else {
      if (field.partOf !== null) for (const other of field.partOf.oneof) delete out[other];
      out[field.name] = fieldValueFromJson(field, value);
    }
  }
  return out;
}

// ------------------------------------------------------------------ writing

const TO_OBJECT: protobuf.IConversionOptions = {
  longs: String,
  enums: Number,
  bytes: String,
  defaults: false,
  arrays: false,
  objects: false,
  oneofs: true,
};

/** A JSON string as Go's encoder writes it. */
function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || ch === "<" || ch === ">" || ch === "&" || c === 0x2028 || c === 0x2029)
      out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

function isZero(v: unknown): boolean {
  return v === 0 || v === "0" || v === "" || v === false;
}

function fieldValueToJson(field: protobuf.FieldBase, v: unknown): string {
  const t = field.resolvedType;
  if (t instanceof protobuf.Type) return objectToJson(t, v as Record<string, unknown>);
  if (t instanceof protobuf.Enum) {
    const name = typeof v === "number" ? t.valuesById[v] : undefined;
    return name === undefined ? String(v) : goQuote(name);
  }
  if (field.long || typeof v === "string") return goQuote(String(v));
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : goQuote(String(v));
  return String(v);
}

function objectToJson(type: protobuf.Type, obj: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const field of type.fieldsArray) {
    const v = obj[field.name];
    if (v === undefined || v === null) continue;
    let text: string;
    if (field.map) {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length === 0) continue;
      text = `{${entries.map(([k, e]) => `${goQuote(k)}:${fieldValueToJson(field, e)}`).join(",")}}`;
    } else if (field.repeated) {
      const items = v as unknown[];
      if (items.length === 0) continue;
      text = `[${items.map((e) => fieldValueToJson(field, e)).join(",")}]`;
    } else {
      const setMember = field.partOf !== null && obj[field.partOf.name] === field.name;
      if (!setMember && !(field.resolvedType instanceof protobuf.Type) && isZero(v)) continue;
      text = fieldValueToJson(field, v);
    }
    parts.push(`${goQuote(field.name)}:${text}`);
  }
  return `{${parts.join(",")}}`;
}

/** A response message, encoded by the method's serializer, as the gateway's JSON (see the header). */
export function messageToJson(type: protobuf.Type, encoded: Uint8Array): string {
  const obj = type.toObject(type.decode(encoded), TO_OBJECT) as Record<string, unknown>;
  return objectToJson(type, obj);
}

/** A plain object (a gateway error body, a stream chunk's shell) as Go's encoder writes it. */
export function plainToJson(v: Readonly<Record<string, string | number>>): string {
  return `{${Object.entries(v)
    .map(([k, e]) => `${goQuote(k)}:${typeof e === "number" ? String(e) : goQuote(e)}`)
    .join(",")}}`;
}
