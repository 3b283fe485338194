import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { Agent, request, fetch as undiciFetch } from "undici";
import { createGatewayEtcd, type GatewayDuplex, type GatewayPost } from "../etcd/gateway.js";
import type { EtcdClient, EtcdConnectionOptions } from "../etcd/types.js";
import { Deadline } from "../timers.js";

/**
 * Most unary calls the gateway transport keeps in flight per etcd endpoint; the rest
 * queue in undici until a connection is free (their deadline still runs). Node's global
 * fetch has no such cap: 1,000 waiters arriving at once opened ≈ 1,200 connections to
 * etcd, each with its own socket and parser state (see BENCHMARKS.md).
 */
export const GATEWAY_CONNECTIONS = 64;

/**
 * The gateway transport with undici connection pools of its own: one capped pool for
 * unary calls and one uncapped for watch streams, which hold their connection while
 * they run and so must never take the unary calls' slots. undici's Agent also takes the
 * CA and client certificate that Node's built-in fetch cannot. Unary calls use undici's
 * `request`, not `fetch`: without the Web Request/Response/stream objects a call costs
 * the service about a quarter of the CPU and far less garbage (see BENCHMARKS.md).
 */
export function gatewayOnNode(opts: EtcdConnectionOptions, connections = GATEWAY_CONNECTIONS): EtcdClient {
  const connect = opts.tls ? { connect: { ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key } } : {};
  // A connection not made within a call's deadline is of no use to that call.
  const unary = new Agent({ connections, pipelining: 1, connect: { ...connect.connect, timeout: opts.timeoutMs } });
  const watches = new Agent(connect);
  const post: GatewayPost = (url, { headers, body, signal }) =>
    settledByAbort(
      signal,
      (async () => {
        const res = await request(url, { method: "POST", headers, body, signal, dispatcher: unary });
        return { status: res.statusCode, text: await res.body.text() };
      })(),
    );
  const watchFetch = ((input: string | URL | Request, init?: RequestInit) =>
    undiciFetch(input as string, { ...(init as object), dispatcher: watches })) as unknown as typeof fetch;
  const client = createGatewayEtcd({ ...opts, fetch: watchFetch, post, duplex: nodeDuplex(opts.tls) });
  const close = client.close;
  client.close = async () => {
    await close.call(client);
    await Promise.allSettled([unary.close(), watches.close()]);
  };
  return client;
}

/**
 * `work`, or its signal's abort as soon as that comes. undici's `request` heeds an abort
 * only once the request has a connection: one whose connection is still being made (its
 * SYNs dropped by a network partition) waits for the connect to fail, by default 10 s,
 * long past the call's deadline. Found by the verify partition scenarios: an instance
 * cut off from etcd answered 503 after 10.5 s, not after its 1 s deadline.
 */
function settledByAbort<T>(signal: AbortSignal, work: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new Error("aborted"));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

/**
 * Long-lived gateway streams over node:http. undici cannot be used here: it refuses
 * `Expect: 100-continue`, and without that header etcd's gateway (Go's HTTP/1.1 server)
 * holds every answer until the request body ends; with it, each message is answered as
 * it arrives. Each stream has a connection of its own for as long as it runs.
 */
export function nodeDuplex(tls: EtcdConnectionOptions["tls"]): GatewayDuplex {
  return (url, headers, onLine, onClosed, timeoutMs) =>
    new Promise((resolve, reject) => {
      const target = new URL(url);
      const req = (target.protocol === "https:" ? httpsRequest : httpRequest)(target, {
        method: "POST",
        headers: { ...headers, expect: "100-continue" },
        agent: false,
        ...(tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : {}),
      });
      let settled = false;
      let ended = false;
      const deadline = new Deadline(Date.now() + timeoutMs);
      const fail = (err: Error) => {
        deadline.done();
        req.destroy();
        if (!settled) {
          settled = true;
          reject(err);
        } else if (!ended) {
          ended = true;
          onClosed(err);
        }
      };
      deadline.signal.addEventListener("abort", () => fail(new Error(`no answer within ${timeoutMs} ms`)));
      req.on("error", fail);
      const accept = () => {
        deadline.done();
        if (settled) return;
        settled = true;
        resolve({ status: 200, stream: { write: (text) => req.write(text), end: () => req.end() } });
      };
      // etcd sends "100 Continue" once it has opened the stream to its gRPC side.
      req.on("continue", accept);
      req.on("response", (res) => {
        if (res.statusCode !== 200) {
          // A refusal (bad token, no such endpoint) comes instead of "100 Continue"; the
          // deadline still covers reading it.
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            deadline.done();
            req.destroy();
            if (settled) return fail(new Error(`HTTP ${res.statusCode}`));
            settled = true;
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") });
          });
          res.on("error", fail);
          return;
        }
        accept();
        let buffered = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffered += chunk;
          for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (line) onLine(line);
          }
        });
        res.on("error", fail);
        res.on("close", () => fail(new Error("etcd ended the stream")));
      });
      req.flushHeaders();
    });
}
