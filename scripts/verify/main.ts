/**
 * `npm run verify`: the fencing and mutual-exclusion checker (docs/verification.md).
 *
 *   npm run verify                      long form, every scenario on both transports, writes the doc
 *   npm run verify -- --short           short form (what CI runs through test/verify/), prints only
 *   npm run verify -- --scenario outage --transport http [--seconds 20] [--fuzz-runs 500]
 *   npm run verify -- --scenario lines-cluster --scenario lines-vanish --docs
 *                                       long form of some scenarios; their tables replace
 *                                       those in the doc (with a note of the re-run)
 *   npm run verify -- --broken [--docs] only the deliberately broken variants (broken.ts),
 *                                       which the long form also runs last
 *   npm run verify -- --broken --variant force-ignores-token    one of them
 *   npm run verify -- --etcd-control [--docs]
 *                                       only the control experiment on etcd alone
 *                                       (faults/etcd-lease-control.ts), which the long
 *                                       form also runs; --short: fewer leases and rounds
 *
 * Exits 1 when any violation was found.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { parseArgs } from "node:util";
import { BROKEN_VARIANTS, brokenSection, runBrokenVariants } from "./broken.js";
import { CONTROL_LONG, CONTROL_SHORT, controlSection, runEtcdControl } from "./faults/etcd-lease-control.js";
import { FAULT_SCENARIOS } from "./faults/scenarios.js";
import { type FuzzResult, runFuzz } from "./fuzz.js";
import type { Transport } from "./instance.js";
import { document, fuzzSection, machine, refreshDocument, scenarioSection } from "./report.js";
import { LONG, SCENARIOS, type Scale, type ScenarioResult, SHORT } from "./scenarios.js";

if (process.argv.includes("--help") || process.argv.includes("-h")) {
  const ids = (list: readonly { id: string }[]) => list.map((s) => s.id).join(", ");
  console.log(`usage: npm run verify -- [options]   (docs/verification.md says what each checks)
  (none)              long form: every scenario on both transports, then the broken variants and
                      the etcd control experiment; writes docs/verification.md
  --short             short form (what CI runs); prints only
  --scenario ID       one scenario (repeatable): ${ids([...SCENARIOS, ...FAULT_SCENARIOS])}
  --transport T       grpc or http (repeatable; default both)
  --seconds S         length of each scenario's load
  --fuzz-runs N       model-checker fuzz runs (default 1000, short 100)
  --docs              with --scenario/--broken/--etcd-control: replace those tables in the doc
  --no-docs           long form without writing the doc
  --broken            only the deliberately broken variants; --variant ID for one: ${ids(BROKEN_VARIANTS)}
  --etcd-control      only the control experiment on etcd alone
Exits 1 when any violation was found.`);
  process.exit(0);
}

function parseOptions() {
  try {
    return parseArgs({
      options: {
        short: { type: "boolean", default: false },
        scenario: { type: "string", multiple: true },
        transport: { type: "string", multiple: true },
        seconds: { type: "string" },
        "fuzz-runs": { type: "string" },
        "no-docs": { type: "boolean", default: false },
        docs: { type: "boolean", default: false },
        broken: { type: "boolean", default: false },
        variant: { type: "string", multiple: true },
        "etcd-control": { type: "boolean", default: false },
      },
    });
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)} (npm run verify -- --help lists the options)`);
    process.exit(64);
  }
}
const { values } = parseOptions();

const base = values.short ? SHORT : LONG;
const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
const scale: Scale = {
  ...base,
  seconds: Object.fromEntries(Object.entries(base.seconds).map(([k, v]) => [k, seconds ?? v])) as Scale["seconds"],
};
const transports = (values.transport ?? ["grpc", "http"]) as Transport[];
// --broken alone: only the broken variants; --etcd-control alone: only the control experiment.
const onlyBroken = values.broken && !values.scenario;
const onlyControl = values["etcd-control"] && !values.scenario && !values.broken;
const scenarios = [...SCENARIOS, ...FAULT_SCENARIOS].filter(
  (s) => !onlyBroken && !onlyControl && (!values.scenario || values.scenario.includes(s.id)),
);
const fuzzRuns = onlyBroken || onlyControl ? 0 : Number(values["fuzz-runs"] ?? (values.short ? 100 : 1_000));
const everything =
  !values.scenario && !values.transport && values.seconds === undefined && !values.broken && !values["etcd-control"];
const writeDocs = !values.short && everything && !values["no-docs"];
const refreshDocs = !values.short && !everything && values.docs;
const loadAtStart = loadavg()[0] ?? 0;

const started = performance.now();
const sections: string[] = [];
let violations = 0;
let attributed = 0;
for (const s of scenarios) {
  const results: ScenarioResult[] = [];
  for (const transport of transports) {
    const t0 = performance.now();
    console.error(`verify: ${s.id} on ${transport} (${scale.seconds[s.id]} s of load)…`);
    const r = await s.run(transport, scale);
    const caught = s.expects ? `, ${r.caught} caught as expected` : "";
    const etcd = r.attributed?.length ? ` (and ${r.attributed.length} attributed to etcd's lease defect)` : "";
    console.error(
      `verify: ${s.id} on ${transport}: ${r.violations} violations${etcd}${caught}, ${Math.round((performance.now() - t0) / 1000)} s`,
    );
    results.push(r);
    violations += r.violations;
    attributed += r.attributed?.length ?? 0;
  }
  const section = scenarioSection(s, results);
  console.log(`\n${section}\n`);
  sections.push(section);
}
// etcd alone, no leasehold: whether it revokes live leases when a paused leader wakes
// up, which is what the attribution above relies on. Its numbers are reported, not
// counted: a fixed etcd shows none, and either way leasehold has no part in them.
if (values["etcd-control"] || (everything && !values.short)) {
  const r = await runEtcdControl({ ...(values.short ? CONTROL_SHORT : CONTROL_LONG), log: (l) => console.error(l) });
  const section = controlSection(r);
  console.log(`\n${section}\n`);
  sections.push(section);
}
const scenarioSections = [...sections];
if (fuzzRuns > 0 && !values.scenario) {
  const results: FuzzResult[] = [];
  for (const transport of transports) {
    console.error(`verify: fuzzing on ${transport} (${fuzzRuns} runs)…`);
    const r = await runFuzz({ transport, runs: fuzzRuns });
    results.push(r);
    violations += r.failures.length;
  }
  const section = fuzzSection(results);
  console.log(`\n${section}\n`);
  sections.push(section);
}

// The checker must find what deliberately broken builds do wrong (their violations are
// not counted above: a variant it misses is what fails the run).
let missed = 0;
if (values.broken || (everything && !values.short)) {
  const results = await runBrokenVariants({
    scale: SHORT,
    transport: (values.transport?.[0] ?? "grpc") as Transport,
    variants: BROKEN_VARIANTS.filter((v) => !values.variant || values.variant.includes(v.id)),
    log: (line) => console.error(line),
  });
  missed = results.filter((r) => !r.caught).length;
  const section = brokenSection(results);
  console.log(`\n${section}\n`);
  sections.push(section);
  scenarioSections.push(section);
}

const totalSeconds = (performance.now() - started) / 1000;
const etcdNote = attributed > 0 ? ` (and ${attributed} attributed to etcd's lease defect, not counted)` : "";
console.log(`verify: ${violations} violations${etcdNote} in ${Math.round(totalSeconds)} s`);
if (writeDocs) {
  const path = new URL("../../docs/verification.md", import.meta.url);
  writeFileSync(path, document({ scale, sections, totalSeconds, violations, attributed, machine: machine() }));
  console.log(`verify: wrote ${path.pathname}`);
} else if (refreshDocs) {
  const path = new URL("../../docs/verification.md", import.meta.url);
  const m = machine();
  const seconds = [...new Set(scenarios.map((s) => scale.seconds[s.id]))].join("/");
  const what = onlyBroken
    ? "broken variants"
    : onlyControl
      ? "etcd control experiment"
      : scenarios.map((s) => s.id).join(", ");
  const form = onlyBroken
    ? "short form of their scenarios"
    : onlyControl
      ? `${values.short ? "short" : "long"} form`
      : `${scale.form} form (${scale.clients} clients, ${seconds} s of load per transport)`;
  const note = `${what}: ${m.date}, commit ${m.commit}, ${form}, ${Math.round(totalSeconds)} s, **${violations} violations**${etcdNote}; load average ${loadAtStart.toFixed(1)} at the start, ${(loadavg()[0] ?? 0).toFixed(1)} at the end (${cpus().length} CPUs)`;
  writeFileSync(path, refreshDocument(readFileSync(path, "utf8"), scenarioSections, note));
  console.log(`verify: refreshed ${path.pathname}`);
}
if (missed > 0) console.log(`verify: the checker missed ${missed} broken variant(s)`);
process.exit(violations === 0 && missed === 0 ? 0 : 1);
