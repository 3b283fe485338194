import { until } from "./http.js";

/** One Server-Sent Event as a client sees it. */
export interface SseEvent {
  event: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests inspect arbitrary JSON
  data: any;
  /** The event's own `id` field, when it had one. */
  id?: string;
  /** What EventSource would report as lastEventId: the latest id seen so far. */
  lastEventId: string;
}

/**
 * A Server-Sent Events stream read with fetch, parsed as EventSource parses it (events
 * end at a blank line; `:` lines are comments). Everything is collected; tests await
 * what they expect with `until` and `close()` it (the connection ends: a hang-up).
 */
export interface SseStream {
  status: number;
  headers: Headers;
  events: SseEvent[];
  /** Comment lines, without the colon. */
  comments: string[];
  /** Whether the server ended the stream. */
  readonly ended: boolean;
  /** Waits for `n` events in all (fails after `ms`). */
  untilEvents(n: number, ms?: number): Promise<SseEvent[]>;
  close(): void;
}

export async function openSse(
  url: string,
  headers: Record<string, string> = {},
): Promise<SseStream & { text?: string; json?: unknown }> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: abort.signal });
  const events: SseEvent[] = [];
  const comments: string[] = [];
  let ended = false;
  const stream: SseStream = {
    status: res.status,
    headers: res.headers,
    events,
    comments,
    get ended() {
      return ended;
    },
    async untilEvents(n, ms = 10_000) {
      await until(
        () => events.length >= n || ended,
        () => `${n} events (have ${events.length}: ${JSON.stringify(events)})`,
        ms,
      );
      if (events.length < n) throw new Error(`the stream ended after ${events.length} events, expected ${n}`);
      return events.slice(0, n);
    },
    close: () => abort.abort(),
  };
  if (res.status !== 200 || !res.body) {
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {}
    ended = true;
    return { ...stream, text, json };
  }
  void (async () => {
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let lastEventId = "";
    let block: { event?: string; data: string[]; id?: string } = { data: [] };
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let nl = buffer.indexOf("\n");
        while (nl >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, "");
          buffer = buffer.slice(nl + 1);
          nl = buffer.indexOf("\n");
          if (line === "") {
            if (block.id !== undefined) lastEventId = block.id;
            if (block.data.length > 0) {
              events.push({
                event: block.event ?? "message",
                data: JSON.parse(block.data.join("\n")),
                ...(block.id !== undefined ? { id: block.id } : {}),
                lastEventId,
              });
            }
            block = { data: [] };
          } else if (line.startsWith(":")) {
            comments.push(line.slice(1).trim());
          } else {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const v = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") block.event = v;
            else if (field === "data") block.data.push(v);
            else if (field === "id") block.id = v;
          }
        }
      }
    } catch {
      // closed by the test
    } finally {
      ended = true;
    }
  })();
  return stream;
}
