import { createRoute, z } from "@hono/zod-openapi";
import type { Feed, FeedBatch, LineKind } from "../../lock/index.js";
import type { Logger } from "../logger.js";
import { documented, forHandling, type Route } from "../route.js";
import { collectionProblems, EventsHeaders, EventsQuery, problem } from "../schemas.js";

/**
 * Bytes an event stream may have queued for a caller that does not read them; past
 * that the stream ends, and the caller resumes with Last-Event-ID (etcd keeps the
 * history), instead of this instance buffering without bound.
 */
const MAX_QUEUED_BYTES = 1024 * 1024;

const doc = createRoute({
  method: "get",
  path: "/events",
  operationId: "streamEvents",
  tags: ["events"],
  summary: "Stream holder changes (Server-Sent Events)",
  description:
    "A live stream of holder changes of the locks and semaphores under `prefix` that the API key may see. " +
    "Events: `held` {kind, name, token, owner?, value?, ttl} (a new holder, or a holder's new value), `free` " +
    "{kind, name, token} (that grant ended: released, expired or force-released), `reset` {index, reason} (what " +
    "follows is the whole current state: one `held` per holder; reason `start`, `compacted` or `ahead`). The " +
    "SSE `id` is the etcd revision of the change; the events of one revision come together and only the last " +
    "carries the id. Resume with Last-Event-ID (or `?lastEventId=`): every change after it, none twice. A " +
    "`: keep-alive` comment every LEASEHOLD_STREAM_HEARTBEAT seconds.",
  request: { query: EventsQuery, headers: EventsHeaders },
  responses: {
    200: {
      description: "The stream, until the caller goes away, the instance shuts down or etcd fails (then resume)",
      headers: {
        "Cache-Control": { description: "`no-store`", required: true, schema: { type: "string" } },
        "X-Accel-Buffering": {
          description: "`no`: tells a buffering proxy (nginx) to pass events on at once",
          required: true,
          schema: { type: "string" },
        },
      },
      content: {
        "text/event-stream": {
          schema: z.string().openapi({
            example:
              'event: reset\ndata: {"index":1040,"reason":"start"}\n\n' +
              'event: held\ndata: {"kind":"lock","name":"election:web","token":1038,"value":"10.0.0.7:8080","ttl":15}\nid: 1040\n\n' +
              'event: free\ndata: {"kind":"lock","name":"election:web","token":1038}\nid: 1051\n\n',
          }),
        },
      },
    },
    429: problem("too-many-streams: this instance serves LEASEHOLD_MAX_STREAMS streams already", ["too-many-streams"]),
    ...collectionProblems,
  },
});

const BOTH: readonly LineKind[] = ["lock", "semaphore"];

/** `GET /events`: holder changes as Server-Sent Events, scoped like listings. */
export const events: Route = documented(doc, "keyed", (app, { config, lines, log }) => {
  app.openapi(forHandling(doc), async (c) => {
    const query = c.req.valid("query");
    const heartbeatMs = config.LEASEHOLD_STREAM_HEARTBEAT * 1000;
    // The header is what EventSource sends when it reconnects: it is newer than the URL's.
    const resume = c.req.valid("header")["last-event-id"] ?? query.lastEventId;
    const gone = new AbortController();
    const caller = c.req.raw.signal;
    const hangUp = () => gone.abort();
    if (caller.aborted) hangUp();
    else caller.addEventListener("abort", hangUp, { once: true });
    const feed = await lines
      .openFeed({
        kinds: query.kind ? [query.kind] : BOTH,
        prefix: query.prefix ?? "",
        // A key sees only the names under its own prefixes.
        within: c.get("apiKey")?.prefixes ?? [""],
        ...(resume !== undefined ? { after: Number(resume) } : {}),
        signal: gone.signal,
        // Each keep-alive proves the stream is still served; three missed ones free its place.
        staleAfterMs: heartbeatMs * 3,
      })
      .catch((err: unknown) => {
        caller.removeEventListener("abort", hangUp);
        throw err;
      });
    const body = eventStream(feed, heartbeatMs, log, () => {
      caller.removeEventListener("abort", hangUp);
      gone.abort();
    });
    return new Response(body, {
      status: 200,
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        // Proxies that buffer responses (nginx) would hold events back.
        "x-accel-buffering": "no",
      },
    }) as never;
  });
});

/** One revision's events as SSE; the id goes on the last, so a cut between them resumes before them all. */
export function formatBatch(batch: FeedBatch): string {
  let out = "";
  batch.events.forEach(({ event, ...data }, i) => {
    out += `event: ${event}\ndata: ${JSON.stringify(data)}\n`;
    if (i === batch.events.length - 1) out += `id: ${batch.revision}\n`;
    out += "\n";
  });
  return out;
}

/** The response body: the feed's batches as they come, keep-alives in between; ended by either side. */
function eventStream(feed: Feed, heartbeatMs: number, log: Logger, end: () => void): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  const finish = () => {
    clearInterval(heartbeat);
    end();
    feed.close();
  };
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        let open = true;
        const close = () => {
          if (!open) return;
          open = false;
          finish();
          try {
            controller.close();
          } catch {}
        };
        const send = (text: string) => {
          if (!open) return;
          try {
            controller.enqueue(encoder.encode(text));
          } catch {
            close();
            return;
          }
          if ((controller.desiredSize ?? 0) < 0) {
            log.warn("event stream ended: its caller reads too slowly", { queuedBytes: MAX_QUEUED_BYTES });
            close();
          }
        };
        // A first line at once: the caller (and any proxy) sees the stream open.
        send(": leasehold events\n\n");
        if (feed.first) send(formatBatch(feed.first));
        heartbeat = setInterval(() => {
          feed.alive();
          send(": keep-alive\n\n");
        }, heartbeatMs);
        feed
          .run((batch) => send(formatBatch(batch)))
          .then(close, (err: unknown) => {
            log.warn("event stream ended: etcd failed", { err: (err as Error).message });
            close();
          });
      },
      cancel() {
        finish();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: MAX_QUEUED_BYTES }),
  );
}
