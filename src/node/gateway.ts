import { Agent, request, fetch as undiciFetch } from "undici";
import { createGatewayEtcd, type GatewayPost } from "../etcd/gateway.js";
import type { EtcdClient, EtcdConnectionOptions } from "../etcd/types.js";

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
  const unary = new Agent({ connections, pipelining: 1, ...connect });
  const watches = new Agent(connect);
  const post: GatewayPost = async (url, { headers, body, signal }) => {
    const res = await request(url, { method: "POST", headers, body, signal, dispatcher: unary });
    return { status: res.statusCode, text: await res.body.text() };
  };
  const watchFetch = ((input: string | URL | Request, init?: RequestInit) =>
    undiciFetch(input as string, { ...(init as object), dispatcher: watches })) as unknown as typeof fetch;
  const client = createGatewayEtcd({ ...opts, fetch: watchFetch, post });
  const close = client.close;
  client.close = async () => {
    await close.call(client);
    await Promise.allSettled([unary.close(), watches.close()]);
  };
  return client;
}
