/**
 * The tidy test: layer rules that must hold by tooling (CONVENTIONS 1, 10), checked
 * by reading the source files.
 *
 * - The deterministic core (src/raft/, src/state/, tests excluded) imports no node
 *   builtin, reads no clock, calls no Math.random, uses no timer, `performance`,
 *   `process`, `Buffer` or `globalThis`, and has no `async` or `await`.
 * - All of src/: no `export *`, no default export, no explicit `any`.
 * - Tests under src/ and test/: no `.only` or `.skip` left behind.
 *
 * Contract: `checkSource(path, text)` is a pure function of a repo-relative path and
 * the file's text. Comments, string literals, template text and regex literals are
 * blanked before matching, so prose never triggers a rule. Every rule has a bad
 * snippet below that it must flag, so no rule can silently stop working.
 */

import { readdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/** Built, not written, so that text searches for focused tests do not flag these fixtures. */
const DOT = ".";

/** One rule broken at one place. */
interface Finding {
  readonly path: string;
  readonly line: number;
  readonly rule: RuleId;
  readonly excerpt: string;
}

type RuleId =
  | "core-node-import"
  | "core-clock-or-io-global"
  | "core-random"
  | "core-async"
  | "export-star"
  | "export-default"
  | "explicit-any"
  | "focused-or-skipped-test";

/** A string literal's position in the source and its raw content (escapes kept). */
interface StringToken {
  readonly start: number;
  readonly value: string;
}

/** Source text with the same length and line breaks, non-code blanked to spaces. */
interface Masked {
  readonly code: string;
  readonly strings: readonly StringToken[];
}

/** Words after which a `/` starts a regex literal rather than a division. */
const REGEX_AFTER_WORD = new Set([
  "return",
  "typeof",
  "instanceof",
  "case",
  "do",
  "else",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "yield",
  "await",
]);
/** Punctuation after which a `/` starts a regex literal. */
const REGEX_AFTER_PUNCT = "(,=:[!&|?{};+-*%<>~^";

/**
 * Blanks comments, string and template text and regex literals (keeping their
 * delimiters and every line break), and records string literals for the import rule.
 * Template `${...}` expressions stay code. Tokenizer-ish, not a parser: enough for
 * code that passes tsc and biome.
 */
function maskSource(text: string): Masked {
  const out: string[] = [];
  const strings: StringToken[] = [];
  // Brace depth inside each open template `${ ... }`, innermost last.
  const exprDepths: number[] = [];
  const n = text.length;
  let i = 0;
  const blank = (c: string | undefined): string => (c === "\n" ? "\n" : c === undefined ? "" : " ");
  const keep = (c: string): void => {
    out.push(c);
    i++;
  };
  const drop = (): void => {
    out.push(blank(text[i]));
    i++;
  };

  const regexAllowed = (): boolean => {
    let j = out.length - 1;
    while (j >= 0 && /\s/.test(out[j]!)) j--;
    if (j < 0) return true;
    const c = out[j]!;
    if (REGEX_AFTER_PUNCT.includes(c) || c === "}") return true;
    if (!/[\w$]/.test(c)) return false;
    let word = "";
    while (j >= 0 && /[\w$]/.test(out[j]!)) word = out[j--] + word;
    return REGEX_AFTER_WORD.has(word);
  };

  /** Template text from i up to the closing backtick or the next `${`. */
  const scanTemplate = (): void => {
    while (i < n) {
      const c = text[i]!;
      if (c === "\\") {
        drop();
        if (i < n) drop();
      } else if (c === "`") {
        keep(c);
        return;
      } else if (c === "$" && text[i + 1] === "{") {
        keep("$");
        keep("{");
        exprDepths.push(0);
        return;
      } else {
        drop();
      }
    }
  };

  while (i < n) {
    const c = text[i]!;
    const next = text[i + 1];
    if (c === "/" && next === "/") {
      while (i < n && text[i] !== "\n") drop();
    } else if (c === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end < 0 ? n : end + 2;
      while (i < stop) drop();
    } else if (c === '"' || c === "'") {
      const start = i;
      let value = "";
      keep(c);
      while (i < n && text[i] !== c && text[i] !== "\n") {
        if (text[i] === "\\") {
          value += text.slice(i, i + 2);
          drop();
          if (i < n) drop();
        } else {
          value += text[i];
          drop();
        }
      }
      if (i < n && text[i] === c) keep(c);
      strings.push({ start, value });
    } else if (c === "`") {
      keep(c);
      scanTemplate();
    } else if (c === "/" && regexAllowed()) {
      keep(c);
      let inClass = false;
      while (i < n && text[i] !== "\n") {
        const r = text[i]!;
        if (r === "\\") {
          drop();
          if (i < n) drop();
          continue;
        }
        if (r === "/" && !inClass) break;
        if (r === "[") inClass = true;
        else if (r === "]") inClass = false;
        drop();
      }
      if (i < n && text[i] === "/") keep("/");
      while (i < n && /[a-z]/.test(text[i]!)) drop();
    } else if (exprDepths.length > 0 && c === "}" && exprDepths[exprDepths.length - 1] === 0) {
      exprDepths.pop();
      keep(c);
      scanTemplate();
    } else {
      if (exprDepths.length > 0 && c === "{") exprDepths[exprDepths.length - 1]!++;
      if (exprDepths.length > 0 && c === "}") exprDepths[exprDepths.length - 1]!--;
      keep(c);
    }
  }
  return { code: out.join(""), strings };
}

const isCore = (path: string): boolean => /^src\/(raft|state)\//.test(path) && !path.endsWith(".test.ts");
const isSrc = (path: string): boolean => path.startsWith("src/");
const isTest = (path: string): boolean => /^(src|test)\//.test(path) && path.endsWith(".test.ts");

/** A rule matched against the masked code of the files it applies to. */
interface PatternRule {
  readonly id: RuleId;
  readonly applies: (path: string) => boolean;
  readonly pattern: RegExp;
}

/** Not a property access (`x.Date`) and a whole identifier. */
const word = (alternatives: string): RegExp => new RegExp(`(?<![.\\w$])(?:${alternatives})(?![\\w$])`, "g");

const PATTERN_RULES: readonly PatternRule[] = [
  {
    id: "core-clock-or-io-global",
    applies: isCore,
    pattern: word("Date|setTimeout|setInterval|setImmediate|performance|process|Buffer|globalThis"),
  },
  { id: "core-random", applies: isCore, pattern: /\bMath\s*\.\s*random(?![\w$])/g },
  { id: "core-async", applies: isCore, pattern: word("async|await") },
  { id: "export-star", applies: isSrc, pattern: /(?<![.\w$])export\s*\*/g },
  {
    id: "export-default",
    applies: isSrc,
    pattern: /(?<![.\w$])export\s+default(?![\w$])|(?<![.\w$])export\s*\{[^}]*\bas\s+default(?![\w$])/g,
  },
  {
    id: "explicit-any",
    applies: isSrc,
    // `: any`, `as any`, `<any>` and `any` as a type argument or union member.
    pattern: /(?:[:<,|&]|(?<![.\w$])as)\s*any(?![\w$])/g,
  },
  { id: "focused-or-skipped-test", applies: isTest, pattern: /\.\s*(?:only|skip)(?![\w$])/g },
];

/** `import ... from "x"`, `export ... from "x"`, `import "x"`, `import("x")`, `require("x")`. */
const SPECIFIER_BEFORE = /(?:(?<![.\w$])(?:from|import|require)\s*\(?\s*)$/;

function isNodeBuiltin(specifier: string): boolean {
  if (specifier.startsWith("node:")) return true;
  return builtinModules.includes(specifier) || builtinModules.includes(specifier.split("/")[0]!);
}

/** Every rule `text` (the file at repo-relative `path`) breaks. */
function checkSource(path: string, text: string): Finding[] {
  const { code, strings } = maskSource(text);
  const lines = text.split("\n");
  const at = (offset: number, rule: RuleId): Finding => {
    const line = code.slice(0, offset).split("\n").length;
    return { path, line, rule, excerpt: lines[line - 1]!.trim() };
  };
  const findings: Finding[] = [];
  if (isCore(path)) {
    for (const s of strings) {
      if (SPECIFIER_BEFORE.test(code.slice(Math.max(0, s.start - 40), s.start)) && isNodeBuiltin(s.value)) {
        findings.push(at(s.start, "core-node-import"));
      }
    }
  }
  for (const rule of PATTERN_RULES) {
    if (!rule.applies(path)) continue;
    for (const m of code.matchAll(rule.pattern)) findings.push(at(m.index, rule.id));
  }
  return findings.sort((a, b) => a.line - b.line || a.rule.localeCompare(b.rule));
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Repo-relative, `/`-separated paths of the .ts files under `dir` (none if it does not exist). */
function tsFiles(dir: string): string[] {
  const abs = join(ROOT, dir);
  let names: string[];
  try {
    names = readdirSync(abs, { recursive: true, encoding: "utf8" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return names
    .filter((name) => name.endsWith(".ts"))
    .map((name) => relative(ROOT, join(abs, name)).split(sep).join("/"))
    .sort();
}

describe("tidy: the tree", () => {
  it("breaks no layer rule", () => {
    const files = [...tsFiles("src"), ...tsFiles("test")];
    // The scan really ran over the core and the tests, including this file.
    expect(files).toContain("src/raft/log.ts");
    expect(files).toContain("src/raft/raft.ts");
    expect(files).toContain("test/tidy.test.ts");
    const findings = files.flatMap((f) => checkSource(f, readFileSync(join(ROOT, f), "utf8")));
    expect(findings).toEqual([]);
  });
});

/** The rule ids `snippet` breaks when it is the file at `path`. */
function rulesBroken(path: string, snippet: string): RuleId[] {
  return checkSource(path, snippet).map((f) => f.rule);
}

const CORE = "src/raft/example.ts";
const STATE = "src/state/example.ts";
const SRC = "src/server/example.ts";
const TEST = "test/example.test.ts";

describe("tidy: each rule can fail", () => {
  it.each<[RuleId, string, string]>([
    ["core-node-import", CORE, 'import { readFileSync } from "node:fs";'],
    ["core-node-import", STATE, "import fs from 'fs';"],
    ["core-node-import", CORE, 'import { readFile } from "fs/promises";'],
    ["core-node-import", CORE, 'export { randomBytes } from "node:crypto";'],
    ["core-node-import", CORE, 'import "node:process";'],
    ["core-node-import", CORE, 'const m = await import("node:os");'],
    ["core-clock-or-io-global", CORE, "const now = Date.now();"],
    ["core-clock-or-io-global", STATE, "const d: Date = new Date(0);"],
    ["core-clock-or-io-global", CORE, "setTimeout(() => tick(), 10);"],
    ["core-clock-or-io-global", CORE, "const h = setInterval(tick, 10);"],
    ["core-clock-or-io-global", CORE, "setImmediate(tick);"],
    ["core-clock-or-io-global", CORE, "const t = performance.now();"],
    ["core-clock-or-io-global", CORE, "if (process.env.DEBUG) log();"],
    ["core-clock-or-io-global", CORE, 'const b = Buffer.from("x");'],
    ["core-clock-or-io-global", CORE, "const c = globalThis.Date;"],
    ["core-random", CORE, "const r = Math.random();"],
    ["core-random", STATE, "const pick = Math . random;"],
    ["core-async", CORE, "async function load() {}"],
    ["core-async", CORE, "const f = async () => 1;"],
    ["core-async", STATE, "class A { async m() {} }"],
    ["export-star", SRC, 'export * from "./log.ts";'],
    ["export-star", CORE, 'export * as log from "./log.ts";'],
    ["export-default", SRC, "export default function main() {}"],
    ["export-default", SRC, "export { main as default };"],
    ["explicit-any", SRC, "function f(x: any) { return x; }"],
    ["explicit-any", SRC, "const y = x as any;"],
    ["explicit-any", SRC, "const z = <any>x;"],
    ["explicit-any", SRC, "const m = new Map<string, any>();"],
    ["explicit-any", SRC, "let u: string | any[] = [];"],
    ["focused-or-skipped-test", TEST, `it${DOT}only("runs alone", () => {});`],
    ["focused-or-skipped-test", TEST, `describe${DOT}skip("never runs", () => {});`],
    ["focused-or-skipped-test", "src/raft/log.test.ts", `test${DOT}only("x", () => {});`],
    ["focused-or-skipped-test", TEST, `it${DOT}only.each([1])('x %i', () => {});`],
  ])("%s: %s flags %s", (rule, path, snippet) => {
    expect(rulesBroken(path, snippet)).toContain(rule);
  });

  it("awaits are flagged too, on the line they are on", () => {
    const text = "// header\nexport function f(p: P) {\n  return await p;\n}\n";
    expect(checkSource(CORE, text)).toEqual([
      { path: CORE, line: 3, rule: "core-async", excerpt: "return await p;" },
    ]);
  });
});

describe("tidy: prose and other layers do not trigger rules", () => {
  it.each<[string, string]>([
    [CORE, "// Date.now() and Math.random() are inputs; never async, never await.\nconst x = 1;"],
    [CORE, "/* setTimeout(process.exit) */ const y = 2;"],
    [CORE, 'const msg = "Date.now() is not for the core, nor is process or Buffer";'],
    [CORE, `const msg = \`no Math.random(), no \${describeIt(x)} async work\`;`],
    [CORE, "const re = /Date|process|await/g;"],
    [CORE, `const s = \`outer \${\`inner Date \${n}\`} tail async\`;`],
    [CORE, `const t = \`\${a ? { k: "Date" } : {}} process\`; const w = "{ async }";`],
    [CORE, "const q = a / b / c; // division, not a regex: Date"],
    [CORE, "isUpToDate(i, t); log.process(m); this.performance = 1; const asyncish = 1;"],
    [CORE, 'import { Entry } from "./fs.ts"; import { x } from "./process.ts";'],
    [SRC, "// export default and export * are banned; so is x as any.\nexport { a };"],
    [SRC, 'const s = "x: any, y as any, <any>";'],
    [SRC, "const anything: number = company;"],
    [TEST, 'it("does not only skip", () => { const only = 1; expect(only).toBe(1); });'],
    ["src/server/io.ts", 'import { readFile } from "node:fs/promises";\nconst t = Date.now();'],
    ["src/sim/clock.ts", "const d = Date.now(); setTimeout(f, 1);"],
    ["src/server/run.ts", `it${DOT}only('this is not a test file', f);`],
    ["src/raft/raft.test.ts", 'import { readFileSync } from "node:fs";\nconst t = Date.now();'],
  ])("%s: %s", (path, snippet) => {
    expect(checkSource(path, snippet)).toEqual([]);
  });

  it("masking keeps the text's length and line breaks", () => {
    const text = `a("x\\"y") // c\n/* d\ne */ \`t \${b} u\`\nconst r = /[/]x/g;\n`;
    const { code, strings } = maskSource(text);
    expect(code.length).toBe(text.length);
    expect(code.split("\n").length).toBe(text.split("\n").length);
    expect(code).toBe(`a("    ")     \n    \n     \`  \${b}  \`\nconst r = /    / ;\n`);
    expect(strings).toEqual([{ start: 2, value: 'x\\"y' }]);
  });
});
