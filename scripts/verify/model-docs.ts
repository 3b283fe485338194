/**
 * The part of docs/verification.md that describes histories, the model they are checked
 * against and the broken variants (report.ts puts it in the document's prose).
 */
import { LIVE_MARGIN_MS } from "./check.js";

export const HISTORY_AND_MODEL = `**Histories and the model** (every scenario). Every request a client makes is
recorded as an *invoke* when it is sent and an *ok*, *fail* or *info* when its outcome
is known, and after the load the whole history is checked against a model of each
line (\`scripts/verify/model.ts\`), besides the invariants above. Per line, the model is a
lock (a semaphore: of \`limit\` holders), and the checker searches for an order of the
line's operations, each taking effect at one moment between its invoke and its
outcome, in which that sequential model answers every one as the service did:

- a grant (an acquire or redeem answered 201, or 200 the first time its grant reached
  anyone) needs a free place and a token larger than every earlier grant's;
- a grant ends only by its holder's release, a force release or expiry, and expires only
  after its lease's TTL from the send of the first request that may have made it and of
  each renew answered 200 (less ${LIVE_MARGIN_MS} ms); a renew answered 200, a grant received again
  and an inspect that shows it mean it still held then, a renew's or release's 410 that it
  had ended;
- a release answered 204 means its caller held the grant until that moment, when it
  ended; a force release answered 204 ended the holder (the one with \`token\`, if given),
  a 404 found none; an inspect shows exactly the holders (or none: 404);
- an *info* operation may or may not have happened, at any moment after it was sent: a
  release, leave or force release of unknown outcome may have ended a grant, and an
  acquire or redeem of unknown outcome may have made a grant no client received (which
  may explain a force release or an inspect that found a holder nobody knew of).

The search is Wing and Gong's as Knossos and Porcupine run it (depth first over the
next operation that may take effect, remembering what was tried), per line, with times:
each operation takes effect at the earliest moment it can (its send, after the previous
one, or once the expiry it needs became possible), before any operation still open was
answered. *Info* operations are not searched over: the search uses them only where
something needs them, earliest sent first, and expires a grant only when an operation
needs it gone. Grants are ordered by their tokens, so for a correct service the first
order tried fits and the search is linear in the history's length: the unit tests
(\`test/verify/model.test.ts\`) check 5,000 simulated operations on one lock in well under
a second and 50,000 in about a second and a half, and each scenario's notes say how long
its own history took. A violation names the operations that could not come next and why.

The history of each scenario run is written as JSON lines to
\`test-output/verify/histories/<scenario>-<transport>.jsonl\` (\`$VERIFY_HISTORY\` to put
them elsewhere; the notes give the path), one event a line in the order they happened,
for other tools to read:

- \`index\` (its line), \`type\` (\`invoke\`, \`ok\`: a 2xx, \`fail\`: a 4xx, the request had no
  effect, or \`info\`: no answer, a connection that failed or was reset, a request its
  client hung up on, or a 5xx: a 503 may come after etcd applied a write), \`op\` (an
  invoke and its outcome share it), \`process\` (the client; \`nemesis\` for faults),
  \`f\` (\`acquire\`, \`redeem\`, \`renew\`, \`release\`, \`leave\`, \`force\`, \`inspect\`, \`list\`;
  \`fault\`, with \`fault\` saying which, for the faults injected: invoke when injected,
  info when healed), \`kind\` (\`lock\` or \`semaphore\`) and \`name\`, \`caller\` (the API
  key's label), \`instance\` (which service instance);
- times: \`seq\` (the checker's one event counter: "before" is exact), \`time\` (the
  checker's monotonic clock, ms) and \`wall\` (the client's wall clock, ms since the epoch);
- outcomes: \`status\` (HTTP; 0: the connection failed, -1: no answer in time; absent:
  hung up on), \`error\` for those without an answer;
- \`value\`: on invokes what the request sent (\`ttl\`, \`wait\`, \`limit\`, \`queue\`, \`owner\`;
  \`key\`, \`grant\` and \`ticket\`: hashes of the Idempotency-Key, lease handle and ticket;
  \`token\` of a force release by token); on outcomes what the answer said (\`token\`,
  \`grant\` (hash), \`ttl\` and \`limit\` of a grant; \`ticket\` (hash) and \`position\` of a 202;
  \`holders\` and \`waiters\` of an inspect; the problem's \`code\`). Secrets appear only as
  the first 16 hex digits of their SHA-256.

**Broken variants.** The long form (and \`npm run verify -- --broken\`) also runs the checker
against deliberately broken builds: the source tree copied to a temporary directory with
one small text patch (\`scripts/verify/broken.ts\`; nothing in \`src/\` switches them),
its service instances run from that copy. The section "broken variants" below says
which the checker caught, with what; one it misses fails the run.

`;

/** The commands to add to "Running it". */
export const MODEL_COMMANDS = `npm run verify -- --broken                            # the broken variants only (the long form runs them too)
VERIFY_HISTORY=/tmp/h npm run verify -- --short      # histories to /tmp/h/<scenario>-<transport>.jsonl`;

/** What the model and the broken variants showed, for "What it found". */
export const MODEL_FINDINGS = `- **The model finds what the invariants before it missed.** Of the broken variants, the
  force release by token that ends the oldest holder was found by the model alone in
  each of 4 short runs (a 204 for a token whose grant had ended, then that line's next
  holder's 204 release or inspect no order could explain); the force release that revokes
  the lease it read, by the model in 4 of 4 and by "no early end" in 2 of them. The
  other three are found by the invariants too (the join without its compare by every
  check at once, 100+ violations a run). The tenant a's other key replaying the
  Idempotency-Key of a grant just received finds the key not bound to its caller every
  run (\`handle-shared\`); before it, replays only after a dropped first answer found it
  in 1 of 4 runs.
- With the model, the long adversarial run (120 s a transport, now with forces by token,
  tenant probes, semaphore and queue adversaries) found 0 violations in 12,667 and
  13,190 operations (about 10 % of unknown outcome, mostly first answers dropped on
  purpose), each history checked in under a second on a loaded machine.
`;
