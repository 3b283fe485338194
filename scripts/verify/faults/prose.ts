import { QUEUE_LEASE_TTL } from "../../../src/lock/strategies/queue-leases.js";
import { WAITER_SESSION_IDLE_MS } from "../instance.js";
import { DEFECT_LABEL, WAKE_REVOKE_MS } from "./etcd-defect.js";

/* What docs/verification.md says about the fault scenarios (see report.ts). */

/** In "What is checked", before the settings of the instances. */
export const FAULTS_WHAT = `**Faults** (the \`partition-*\`, \`pause-*\`, \`skew\` and \`membership\` scenarios). Three
service instances on a 3-member cluster, under the lock workload above (clients spread
over the instances, failing over on a dropped connection or a 503, never on a slow
answer), while the checker injects a fault every 1.5–3 s; the invariants are the same:

- **network partitions**: each etcd member and each instance runs in a network namespace
  of its own, made by the checker for the run (\`ip netns\`; a veth pair from each to a
  bridge in a hub namespace; one address in 127.77.0.0/24 on each veth, which routes
  between namespaces once a namespace's \`lo\` keeps only 127.0.0.1/32 and
  \`route_localnet\` is on; nothing is added to the host's own network). A partition is a
  set of nft rules that drop every packet between its two sides, both ways, for 2.5–4.5 s
  (longer than the TTL): connections stall, nothing is reset. The checker reaches every
  member and instance through Unix sockets, outside the partitioned network, so clients
  still reach an instance that etcd cannot. The namespaces are named after the checker's
  PID: removed when it ends, on SIGINT or SIGTERM, and after a SIGKILL by the next run.
  Where they cannot be made (not root, no \`nft\`), or with \`VERIFY_PARTITIONS=proxy\`, a
  TCP proxy on every link stalls the cut ones instead (an etcd member's peer connections
  told apart by etcd's \`X-Server-From\` header); each table's notes say which ran.
  \`partition-leader\` isolates the leader from everything; \`partition-split\` cuts a
  minority (one member, every other time the leader, and one instance) from the rest;
  \`partition-instance\` cuts one instance off from every member, and each 503 it answers
  meanwhile must come within 4 s past the request's \`wait\`;
- **pauses**: SIGSTOP for 2.5–4.5 s, then SIGCONT, of the etcd leader (\`pause-leader\`), a
  follower (\`pause-follower\`) or a service instance's process group (\`pause-instance\`:
  its holders' renewals and releases stall with it while their leases run out). On an
  etcd before 3.4.31 or 3.5.13, a deposed leader revokes live leases when it wakes up:
  \`pause-leader\` sets the violations only that can explain apart, in a column of their
  own, by the rule in "What it found", and a control experiment without leasehold
  measures etcd doing it;
- **clock skew** (\`skew\`): libfaketime (Debian's \`faketime\`) preloaded into each instance:
  i0's wall clock jumps to a new offset of ±1–10 minutes at every fault (its timers keep
  real time), i1 is 3 minutes behind and all its clocks, timers included, run at 0.7×
  real time, i2 is 4 minutes ahead and runs at 1.4×; the checker reads each instance's
  clock from its \`Date\` header, and a run in which the skew was not in effect fails.
  Leases and their expiry are etcd's: nothing may depend on an instance's clock. Only the
  time an idle instance keeps its waiters' session lease is its own (a timer), so the
  leak check allows it ${WAITER_SESSION_IDLE_MS / 1000} s at the slowest instance's rate;
- **membership changes** (\`membership\`): a fourth, empty member slot whose endpoint the
  instances know; at each fault a member (every other time the leader) is removed with
  etcd's member remove API and stopped, its data deleted, and a new member (new name, ID
  and data dir) is added in the empty slot with member add and started with
  \`--initial-cluster-state existing\`, on the partition scenarios' network. As an
  endpoint the instances know is always dead, any etcd call may fail (none is retried);
  when that is the revoke of an idle instance's waiters' session lease, the lease goes
  with its ${QUEUE_LEASE_TTL} s TTL, so the leak check allows it ${WAITER_SESSION_IDLE_MS / 1000} + ${QUEUE_LEASE_TTL} s.

After each partition, pause and membership change the checker waits until every member
names the same leader in the same term for 2 s: a member back from a partition or a pause
often forces another election seconds after the fault ended (etcd 3.4 has no pre-vote by
default), and each election gives every lease its whole TTL again, so the leak check
counts from the last leader change it saw. After a partition it also counts from one
partition length after the heal: what the cut connections held back (keep-alives among
it) reaches etcd only when TCP next resends, after a backoff that doubled while the
partition lasted (measured: 2.2 s after a 4.5 s partition healed), and renews its lease
then.

`;

/** In "Running it", after the commands. */
export const FAULTS_RUNNING = `
The fault scenarios need root for the namespaces (else they fall back to proxies, as
\`VERIFY_PARTITIONS=proxy\` forces; \`VERIFY_PARTITIONS=netns\` fails instead), \`nft\`
(Debian: \`nftables\`) and libfaketime (\`faketime\`, or \`LIBFAKETIME\` pointing at
\`libfaketimeMT.so.1\`): \`npm run verify -- --scenario partition-leader --scenario skew\`.
With \`VERIFY_LOGS=<dir>\` every instance logs each request to
\`<dir>/instance-<port>.log\`.
`;

/** In "What it found", after the findings of the other scenarios. */
export const FAULTS_FOUND = `
Faults (the tables above are of the third long run of these scenarios, at 8acd97f: 40 s of
load per scenario and transport, partitions through network namespaces; the first two
found what the fixes and allowances below answer):

- **etcd 3.4.23 revokes live leases when a paused leader wakes up** (\`lost-while-live\`,
  pause-leader; once in that run, gateway: a holder's renew answered 410 488 ms before its
  lease could have expired). The deposed leader's lessor still counts down every lease
  from before its pause; the keep-alives went to the new leader meanwhile, so on waking
  it finds them expired and proposes their revocation, which the cluster applies (etcd
  issue 15247; mitigated in etcd 3.4.31 and 3.5.13, which ignore an old leader's
  revocations). The control experiment above shows it without leasehold (\`npm run
  verify -- --etcd-control\`): in a round, either almost every lease kept alive through
  the followers is revoked 4–83 ms after the SIGCONT, or none is (the lessor's check ran
  before the new leader's first message demoted it, or not); in six runs, 115 of 284
  leases. A holder whose lease goes this way learns it on its next renew, and another
  client may be granted the lock meanwhile; the fencing token is what keeps the resource
  safe (every stale write was rejected). Debian 12 ships etcd 3.4.23: where the leader
  can be paused (GC, a VM descheduled, SIGSTOP), run etcd 3.4.31 or 3.5.13 or later.
  Since that run, pause-leader sets such violations apart in a column of their own
  ("${DEFECT_LABEL}"), each listed with why, and counts everything else.
  On an etcd with the defect (by its \`/version\`), a \`lost-while-live\` is etcd's when
  the span in which its grant must have ended (after its last proof of life, the send
  of its acquire or of its last renew answered 200; before the 410, or the other
  client's grant, that showed it gone) overlaps the first ${WAKE_REVOKE_MS / 1000} s after the SIGCONT of a
  paused *leader* (over ten times the slowest revocation the control experiment saw,
  83 ms, at a load average of 6–10 on 2 CPUs); and the model check's \`linearizability\` violation
  of a line is etcd's when, checked again with exactly those grants allowed to have
  ended from that SIGCONT on, the line fits. After a follower's or an instance's pause,
  with a span outside the window, or on an etcd without the defect, it counts. The
  rule's tests: \`test/verify/etcd-defect.test.ts\`. CI's short form still leaves
  pause-leader out.
- **The gateway transport answered after 10.5 s, not at its deadline, when a connection
  to etcd could not be made** (partition-leader, short form: a request with no answer
  within 6.5 s; alone, an instance cut off from etcd answered a non-waiting acquire 503
  after 10.3 s). undici's \`request\` heeds an abort only once the request has a
  connection, and a connect whose SYNs are dropped lasts its 10 s connect timeout. Fixed in
  \`src/node/gateway.ts\`: the call settles at its deadline, and the pool's connect timeout
  is that deadline. Regression test: \`test/verify/gateway-connect-deadline.test.ts\`. Since,
  a cut-off instance's 503s came within 3.0 s past their \`wait\` (4.6 s in the first run).
- **etcd elects again seconds after a fault ends** (not the service's doing): a member back
  from a partition, with a higher term (no pre-vote in 3.4), forces another election, up
  to 4.7 s after the heal, and each election gives every lease its whole TTL again (no
  lease checkpointing by default). Short runs before the long ones counted the waiter
  keys of such leases as leaks, 6 s after the load; the leak check now counts from the
  last leader change.
- **TCP delivers what a partition held back seconds after the heal**: keep-alives queued
  on a connection a partition stalled reach etcd only at TCP's next resend (2.2 s after a
  4.5 s partition healed, measured) and renew their leases then; once (second run, gRPC)
  a waiters' session lease the instance had retired lived past the allowance. The leak
  check now counts from one partition length after each heal.
- **An endpoint that is always dead** (membership, gRPC): a call that lands on it fails
  (the per-member circuit skips it for a second at a time; no call is retried); when that
  call is the revoke of an idle instance's session lease, the lease stays for its TTL:
  12.5 s after the load, against 11 s allowed. That scenario's leak check allows it. The
  second run stopped on a member remove whose answer was lost and which was retried after
  it had been applied; the checker now reads the member list to tell.
- **Skewed clocks changed nothing**: with wall clocks minutes off, jumping by up to 10
  minutes, and clocks running at 0.7× and 1.4×, tokens stayed unique and in order, no
  clean holds overlapped, no grant ended early and every stale write was rejected: etcd
  owns every lease and its expiry. Only an instance's own housekeeping followed its clock
  (an idle session lease, kept 10 s by its timers, went after 13.8 s at 0.7×).
`;
