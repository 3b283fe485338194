/**
 * Deliberately broken variants of the service, to show the checker finds what it should.
 * Each is this repository's source tree copied to a temporary directory with one small
 * text patch applied (nothing in `src/` switches behaviour), its service instances run
 * from that copy, and one scenario run against them. A patch whose text is no longer in
 * the source fails loudly: the variant must be brought up to date, not skipped.
 */
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Violation } from "./check.js";
import { type Transport, useServiceTree } from "./instance.js";
import { table } from "./report.js";
import { SCENARIOS, type Scale, type ScenarioId, type ScenarioResult } from "./scenarios.js";

const repo = new URL("../..", import.meta.url).pathname;

/** One text replacement in one file of the copy. */
export interface Patch {
  /** Path under the repository (e.g. `src/lock/engine.ts`). */
  file: string;
  find: string;
  replace: string;
  /** How many times `find` occurs (default 1); all are replaced. */
  count?: number;
}

export interface BrokenVariant {
  id: string;
  /** What is broken, for the report. */
  what: string;
  patches: Patch[];
  /** The scenario expected to expose it. */
  scenario: ScenarioId;
}

export const BROKEN_VARIANTS: readonly BrokenVariant[] = [
  {
    id: "force-revokes-lease",
    what: "a force release without the revision guard: it revokes the lease it read instead of deleting the key at the revision it read (the lease may since be another grant's)",
    scenario: "adversarial",
    patches: [
      {
        file: "src/lock/engine.ts",
        find: "marker ? await this.forceDelayed(target, marker) : await this.deleteAt(target.kv.key, target.kv.modRevision)",
        replace:
          "marker ? await this.forceDelayed(target, marker) : await this.etcd.leaseRevoke(target.kv.lease).then(() => true, () => true)",
      },
    ],
  },
  {
    id: "force-ignores-token",
    what: "a force release by token that ends the oldest holder whatever its token",
    scenario: "adversarial",
    patches: [
      {
        file: "src/lock/engine.ts",
        find: "oldest.find((m) => holds(m) && (token === undefined || m.kv.createRevision === token))",
        replace: "oldest.find((m) => holds(m))",
      },
    ],
  },
  {
    id: "join-without-compare",
    what: "a join without the create-revision compare: it takes the lock whoever is in its line (the compare always passes)",
    scenario: "instances",
    patches: [
      {
        file: "src/lock/engine.ts",
        find: "maxCreateRevision: known,",
        replace: "maxCreateRevision: Number.MAX_SAFE_INTEGER - 1,",
      },
    ],
  },
  {
    id: "release-without-guard",
    what: "a release that deletes the key its handle names without the mod-revision guard (and without reading it): 204 whether or not the grant still held",
    scenario: "adversarial",
    patches: [
      {
        file: "src/lock/engine.ts",
        find: "  async release(line: LineRef, handle: string): Promise<Ended> {\n    const what = describe(line);\n    const h = parseHandle(handle);\n",
        replace:
          "  async release(line: LineRef, handle: string): Promise<Ended> {\n    const what = describe(line);\n    const h = parseHandle(handle);\n    if (h) {\n      await this.etcd.guardedWrite({ delete: [this.keys.participant(line, h.keyId)] });\n      return {};\n    }\n",
      },
    ],
  },
  {
    id: "idempotency-key-unbound",
    what: "an Idempotency-Key not bound to its caller: another API key replaying it is handed the first caller's grant",
    scenario: "adversarial",
    patches: [
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the patched text is TypeScript source
      { file: "src/lock/participant.ts", find: "\\0${idem.caller}\\0${idem.key}", replace: "\\0${idem.key}", count: 2 },
    ],
  },
];

/** Copies the source tree to a temporary directory and applies the patches; returns the directory. */
export function patchedTree(patches: readonly Patch[]): string {
  const dir = mkdtempSync(join(tmpdir(), "leasehold-broken-"));
  try {
    cpSync(join(repo, "src"), join(dir, "src"), { recursive: true });
    for (const f of ["package.json", "tsconfig.json"]) cpSync(join(repo, f), join(dir, f));
    symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
    for (const p of patches) applyPatch(dir, p);
    return dir;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Applies one patch in `dir`; throws when its text does not occur as often as expected. */
export function applyPatch(dir: string, p: Patch): void {
  const path = join(dir, p.file);
  const text = readFileSync(path, "utf8");
  const found = text.split(p.find).length - 1;
  if (found !== (p.count ?? 1)) {
    throw new Error(
      `broken variant: ${p.file} has ${found} occurrences of the patched text (expected ${p.count ?? 1}): ${p.find}`,
    );
  }
  writeFileSync(path, text.split(p.find).join(p.replace));
}

export interface BrokenResult {
  variant: BrokenVariant;
  transport: Transport;
  /** The runs made (until one found a violation, at most `attempts`). */
  runs: ScenarioResult[];
  caught: boolean;
  /** Violations of the catching run, by invariant (or "failure": hangs, wrong statuses, leaks...). */
  byInvariant: Record<string, number>;
}

const INVARIANT = /^([a-z-]+): /;

/** What kind each of a result's violations is. */
function kinds(r: ScenarioResult, known: ReadonlySet<string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const d of r.details) {
    if (d.startsWith("(more")) continue;
    const m = INVARIANT.exec(d);
    const k = m && known.has(m[1] as string) ? (m[1] as string) : "failure";
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Invariant names as the checkers report them. */
const INVARIANTS = new Set<Violation["invariant"]>([
  "unique-token",
  "token-order",
  "mutual-exclusion",
  "stale-write-accepted",
  "handle-shared",
  "forced-clean-hold",
  "lost-while-live",
  "over-limit",
  "queue-order",
  "served-after-leaving",
  "unreceived-grant",
  "phantom-grant",
  "linearizability",
]) as ReadonlySet<string>;

/**
 * Runs each variant's scenario against a copy of the source with its patches, until the
 * checker finds a violation (at most `attempts` runs). Each run's history is kept as
 * `<scenario>-<transport>-broken-<variant>.jsonl`.
 */
export async function runBrokenVariants(o: {
  scale: Scale;
  transport: Transport;
  attempts?: number;
  variants?: readonly BrokenVariant[];
  log?: (line: string) => void;
}): Promise<BrokenResult[]> {
  const out: BrokenResult[] = [];
  for (const variant of o.variants ?? BROKEN_VARIANTS) {
    const scenario = SCENARIOS.find((s) => s.id === variant.scenario);
    if (!scenario) throw new Error(`broken variant ${variant.id}: no scenario ${variant.scenario}`);
    const dir = patchedTree(variant.patches);
    const runs: ScenarioResult[] = [];
    try {
      useServiceTree(dir);
      for (let i = 0; i < (o.attempts ?? 3); i++) {
        o.log?.(`verify: broken variant ${variant.id}: ${variant.scenario} on ${o.transport}, run ${i + 1}…`);
        const r = await scenario.run(o.transport, o.scale);
        if (r.history) {
          const kept = r.history.replace(/\.jsonl$/, `-broken-${variant.id}.jsonl`);
          renameSync(r.history, kept);
          r.history = kept;
        }
        runs.push(r);
        o.log?.(`verify: broken variant ${variant.id}: ${r.violations} violations`);
        if (r.violations > 0) break;
      }
    } finally {
      useServiceTree();
      rmSync(dir, { recursive: true, force: true });
    }
    const last = runs.at(-1) as ScenarioResult;
    out.push({
      variant,
      transport: o.transport,
      runs,
      caught: last.violations > 0,
      byInvariant: kinds(last, INVARIANTS),
    });
  }
  return out;
}

/** One line: which variants were caught. */
export function brokenSummary(results: readonly BrokenResult[]): string {
  const caught = results.filter((r) => r.caught);
  const missed = results.filter((r) => !r.caught);
  return `Broken variants caught: **${caught.length} of ${results.length}**${caught.length ? ` (${caught.map((r) => r.variant.id).join(", ")})` : ""}${missed.length ? `; missed: ${missed.map((r) => r.variant.id).join(", ")}` : ""}.`;
}

/** The report's section: the summary line and a row per variant. */
export function brokenSection(results: readonly BrokenResult[]): string {
  const rows = results.map((r) => {
    const last = r.runs.at(-1) as ScenarioResult;
    return [
      `\`${r.variant.id}\``,
      r.variant.what,
      `${r.variant.scenario} (${r.transport})`,
      r.caught ? `yes, run ${r.runs.length}` : `no (${r.runs.length} runs)`,
      Object.entries(r.byInvariant)
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `${n} ${k}`)
        .join(", ") || "–",
      String(last.grants),
    ];
  });
  return [
    "### broken variants",
    "",
    "Each variant is the source tree copied to a temporary directory with one small text patch (`scripts/verify/broken.ts`; nothing in `src/` switches it), its service instances run from that copy, and the short form of one scenario run against it, again up to 3 times until the checker reports a violation. A variant the checker misses fails `npm run verify`.",
    "",
    brokenSummary(results),
    "",
    table(["variant", "what is broken", "scenario", "caught", "violations (by invariant)", "grants"], rows),
    "",
    "The first violation each reported:",
    "",
    ...results.map((r) => {
      const first = (r.runs.at(-1) as ScenarioResult).details[0];
      const shown = first && first.length > 600 ? `${first.slice(0, 600)}…` : first;
      return `- \`${r.variant.id}\`: ${shown ?? "none"}`;
    }),
  ].join("\n");
}
