/** Keep-alives over long-lived gateway streams (where the runtime can hold one open). */

import { Deadline } from "../../timers.js";
import { type KeepAliveEvents, type KeepAliveStream, keepAliveLanes } from "../keepalive-lanes.js";
import { EtcdUnavailableError } from "../types.js";
import { decodeGatewayError, decodeKeepAlive, EtcdGatewayError, errorInfo, isUnavailable, type Json } from "./codec.js";
import type { Endpoint, GatewaySession, Token } from "./session.js";

/**
 * A POST whose request body stays open, so one gateway stream carries many messages:
 * `write` sends one, each line of the answer goes to `onLine`, and `onClosed` runs once
 * when the stream ends or breaks. Resolves once etcd has taken the stream (status 200),
 * or with a refusal's status and body; rejects when the endpoint cannot be reached within
 * `timeoutMs`. Node has one (src/node/gateway.ts); fetch cannot send while it receives.
 */
export type GatewayDuplex = (
  url: string,
  headers: Record<string, string>,
  onLine: (line: string) => void,
  onClosed: (err: Error) => void,
  timeoutMs: number,
) => Promise<{ status: 200; stream: { write(text: string): void; end(): void } } | { status: number; text: string }>;

/**
 * Keep-alives spread over a few long-lived streams (see keepAliveLanes). Each call has
 * one deadline; a stream that broke because etcd stopped taking its token costs the
 * call one retry on a fresh stream with a fresh token.
 */
export function gatewayKeepAlives(session: GatewaySession, duplex: GatewayDuplex) {
  const lanes = keepAliveLanes((events) =>
    session.withToken(async (used) => {
      const opened = await session.rotate((ep) => openOn(session, duplex, ep, used, events));
      if ("stream" in opened) return opened.stream;
      throw session.refusal(
        used,
        opened.refusal.message,
        new EtcdGatewayError(
          `etcd /v3/lease/keepalive failed: ${opened.refusal.message}`,
          opened.refusal.code,
          opened.status,
        ),
      );
    }),
  );
  return {
    async keepAliveOnce(id: bigint): Promise<number> {
      const deadline = new Deadline(Date.now() + session.timeoutMs);
      const late = () =>
        new EtcdUnavailableError(
          `etcd did not answer a keep-alive within ${session.timeoutMs} ms (${session.origins})`,
        );
      try {
        return await session.retryOnStaleToken(async () => {
          const sent = lanes.send(id);
          try {
            return await deadline.race(sent.reply, late);
          } finally {
            sent.forget();
          }
        });
      } finally {
        deadline.done();
      }
    },
    close: () => lanes.close(),
  };
}

/**
 * Opens one keep-alive stream on `ep`. etcd checks the token when the stream opens (a
 * refusal comes back for the caller to sort); an error line later (token gone, member
 * stopping) breaks the stream, and the lane opens a new one on next use. Throws, so the
 * rotation moves on, when the endpoint cannot be reached or cannot serve now.
 */
async function openOn(
  session: GatewaySession,
  duplex: GatewayDuplex,
  ep: Endpoint,
  used: Token,
  events: KeepAliveEvents,
): Promise<{ stream: KeepAliveStream } | { status: number; refusal: { code: number | undefined; message: string } }> {
  const onLine = (line: string) => {
    let parsed: Json;
    try {
      parsed = JSON.parse(line) as Json;
    } catch {
      events.broken(new EtcdUnavailableError(`etcd at ${ep.origin} sent a malformed keep-alive answer`));
      return;
    }
    const err = errorInfo(parsed);
    if (!err) {
      const result = (parsed.result ?? {}) as Json;
      events.reply(String(result.ID), decodeKeepAlive(result));
      return;
    }
    const broke = new EtcdUnavailableError(`etcd at ${ep.origin} broke the keep-alive stream: ${err.message}`);
    events.broken(session.refusal(used, err.message, broke));
  };
  const onClosed = (err: Error) => events.broken(new EtcdUnavailableError(`etcd at ${ep.origin}: ${err.message}`));
  const opened = await duplex(
    `${ep.base}/v3/lease/keepalive`,
    session.headers(used),
    onLine,
    onClosed,
    session.timeoutMs,
  );
  if (opened.status === 200 && "stream" in opened) {
    const { stream } = opened;
    return { stream: { write: (id) => stream.write(`{"ID":"${id}"}\n`), end: () => stream.end() } };
  }
  const refusal = decodeGatewayError(opened.status, "text" in opened ? opened.text : "");
  if (isUnavailable(opened.status, refusal.code)) throw new Error(refusal.message);
  return { status: opened.status, refusal };
}
