// Why the fencing token matters, end to end. A lease-based lock alone cannot stop a
// holder that paused (GC, a slow network, a suspended VM) past its TTL from writing
// after the lock has passed to someone else. The resource it writes to can: it keeps
// the highest token it has seen and refuses writes that carry a lower one.
//
//   npm run build   # in a clone: "leasehold/client" is the compiled client in dist/
//   LEASEHOLD_URL=http://127.0.0.1:8080 node examples/fenced-write/fenced-write.mjs
//
// The resource here is a tiny HTTP store started by this script; in SQL the same
// check is one statement:
//   UPDATE reports SET body = $body, fence = $token WHERE id = $id AND fence <= $token;
//   -- 0 rows: a newer holder has written; the write is refused.
import { createServer } from "node:http";
import { createClient } from "leasehold/client";

/** The protected resource: one document, and the highest fencing token that wrote it. */
function startStore() {
  const doc = { body: "", fence: 0 };
  const server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    const token = Number(req.headers["fencing-token"]);
    if (req.method !== "PUT" || !Number.isSafeInteger(token)) {
      res.writeHead(400).end("PUT with a Fencing-Token header\n");
    } else if (token < doc.fence) {
      res.writeHead(409).end(`stale fencing token ${token}: ${doc.fence} has written\n`);
    } else {
      Object.assign(doc, { body, fence: token });
      res.writeHead(204).end();
    }
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${server.address().port}`, doc, server })),
  );
}

async function write(store, who, token, body) {
  const res = await fetch(`${store.url}/reports/daily`, {
    method: "PUT",
    headers: { "fencing-token": String(token) },
    body,
  });
  const note = res.status === 204 ? "accepted" : `refused (${res.status}: ${(await res.text()).trim()})`;
  console.log(`${who} writes ${JSON.stringify(body)} with token ${token}: ${note}`);
  return res.status === 204;
}

const client = createClient();
const store = await startStore();
const name = process.argv[2] ?? `report:fenced-${process.pid}`;

// A takes the lock and writes.
const a = await client.acquire(name, { ttl: 2, owner: "A" });
console.log(`A holds ${name} with token ${a.token}`);
await write(store, "A", a.token, "A's first draft");

// A stalls and stops renewing. Its lease expires; B, waiting for the lock, gets it.
console.log("A pauses (no renewals) ...");
const b = await client.acquire(name, { ttl: 10, wait: 10, owner: "B" });
console.log(`B holds ${name} with token ${b.token} (A's lease expired)`);
await write(store, "B", b.token, "B's report");

// A wakes up, still believing it holds the lock, and writes: the store refuses it.
const staleAccepted = await write(store, "A", a.token, "A's late overwrite");
await client.release(name, b.lease);
store.server.close();

console.log(`the store keeps ${JSON.stringify(store.doc.body)} (fence ${store.doc.fence})`);
process.exitCode = !staleAccepted && store.doc.body === "B's report" ? 0 : 1;
