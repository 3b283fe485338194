/** What docs/verification.md says about the fault scenarios (see report.ts). */

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
  its holders' renewals and releases stall with it while their leases run out);
- **clock skew** (\`skew\`): libfaketime (Debian's \`faketime\`) preloaded into each instance:
  i0's wall clock jumps to a new offset of ±1–10 minutes at every fault (its timers keep
  real time), i1 is 3 minutes behind and all its clocks, timers included, run at 0.7×
  real time, i2 is 4 minutes ahead and runs at 1.4×; the checker reads each instance's
  clock from its \`Date\` header, and a run in which the skew was not in effect fails.
  Leases and their expiry are etcd's: nothing may depend on an instance's clock. Only the
  time an idle instance keeps its waiters' session lease is its own (a timer), so the
  leak check allows it 10 s at the slowest instance's rate;
- **membership changes** (\`membership\`): a fourth, empty member slot whose endpoint the
  instances know; at each fault a member (every other time the leader) is removed with
  etcd's member remove API and stopped, its data deleted, and a new member (new name, ID
  and data dir) is added in the empty slot with member add and started with
  \`--initial-cluster-state existing\`, on the partition scenarios' network. As an
  endpoint the instances know is always dead, any etcd call may fail (none is retried);
  when that is the revoke of an idle instance's waiters' session lease, the lease goes
  with its 5 s TTL, so the leak check allows it 10 + 5 s.

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
