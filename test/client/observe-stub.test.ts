import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createClient, LeaseholdError, type LeaseholdEvent } from "../../src/client/index.js";
import { type SseEvent, SseParser } from "../../src/client/sse.js";
import { until } from "../support/http.js";

/**
 * The SSE parser and observe's reconnect logic against a scripted fetch: decisions the
 * real service can't be made to produce on demand (a stream cut mid-event, a silent
 * connection, a 503 with Retry-After).
 */

function parseAll(chunks: string[], lastEventId = ""): { events: SseEvent[]; retries: number[]; last: string } {
  const events: SseEvent[] = [];
  const retries: number[] = [];
  const parser = new SseParser(lastEventId, { event: (e) => events.push(e), retry: (ms) => retries.push(ms) });
  for (const c of chunks) parser.push(c);
  return { events, retries, last: parser.lastEventId };
}

describe("SseParser", () => {
  it("parses events, ids, multi-line data, comments, retry and every line ending", () => {
    const stream =
      "\uFEFF: heartbeat\n" +
      "retry: 250\n" +
      'event: held\nid: 7\ndata: {"a":1}\n\n' +
      "event: free\r\nid: 8\r\ndata: x\r\ndata:y\r\n\r\n" +
      "data: no type\rid: 9\r\r" +
      "id: 10\n\n" + // an id without data dispatches nothing but counts
      "event: ignored\n\n" + // no data: nothing
      "field-unknown: z\ndata: after\n\n";
    const { events, retries, last } = parseAll([stream]);
    expect(events).toEqual([
      { event: "held", data: '{"a":1}', id: "7", hasId: true },
      { event: "free", data: "x\ny", id: "8", hasId: true },
      { event: "message", data: "no type", id: "9", hasId: true },
      { event: "message", data: "after", id: "10", hasId: false },
    ]);
    expect(retries).toEqual([250]);
    expect(last).toBe("10");
  });

  it("a block cut short is not dispatched and its id does not count", () => {
    const { events, last } = parseAll(["id: 1\ndata: a\n\nid: 2\ndata: b\n"], "0");
    expect(events).toEqual([{ event: "message", data: "a", id: "1", hasId: true }]);
    expect(last).toBe("1");
  });

  it("gives the same events however the text is split into chunks (CR LF split too)", () => {
    const stream =
      'event: held\r\nid: 1\r\ndata: {"n":"x"}\r\n\r\n: hb\r\nevent: free\nid: 2\ndata: y\n\nid: 3\rdata: z\r\r';
    const whole = parseAll([stream]);
    expect(whole.events).toHaveLength(3);
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 12 }), (cuts) => {
        const at = [0, ...cuts.sort((a, b) => a - b), stream.length];
        const chunks = at.slice(1).map((end, i) => stream.slice(at[i], end));
        expect(parseAll(chunks)).toEqual(whole);
      }),
    );
  });
});

/** One scripted connection: what the stub fetch answers for the next request. */
type Script =
  | { status: number; headers?: Record<string, string>; body?: string }
  | { stream: (push: (text: string) => void, end: () => void, fail: (err: Error) => void) => void };

interface Stub {
  fetch: typeof fetch;
  /** Last-Event-ID of each request, in order ("" when none). */
  resumes: string[];
  urls: string[];
  /** Signals of each request, to see that a closed stream is closed. */
  signals: AbortSignal[];
}

function stubFetch(scripts: Script[]): Stub {
  const stub: Stub = { fetch: undefined as never, resumes: [], urls: [], signals: [] };
  stub.fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    stub.resumes.push(headers.get("last-event-id") ?? "");
    stub.urls.push(String(input));
    const signal = init?.signal as AbortSignal;
    stub.signals.push(signal);
    const script = scripts.shift();
    if (!script) return new Promise<Response>(() => {}); // never answers
    if ("status" in script) {
      return new Response(script.body ?? "", { status: script.status, headers: script.headers });
    }
    // A pull-based body: an error comes only after what was pushed before it has been read,
    // as on a real connection.
    const encoder = new TextEncoder();
    const items: (Uint8Array | Error | "end")[] = [];
    let wake: (() => void) | undefined;
    const put = (item: Uint8Array | Error | "end") => {
      items.push(item);
      wake?.();
    };
    signal.addEventListener("abort", () => put(new DOMException("aborted", "AbortError")), { once: true });
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        while (items.length === 0) await new Promise<void>((r) => (wake = r));
        const item = items.shift() as Uint8Array | Error | "end";
        if (item === "end") controller.close();
        else if (item instanceof Error) controller.error(item);
        else controller.enqueue(item);
      },
    });
    script.stream(
      (text) => put(encoder.encode(text)),
      () => put("end"),
      (err) => put(err),
    );
    return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
  }) as typeof fetch;
  return stub;
}

/** A held event as the service sends it; `id` undefined for one that is not the last of its revision. */
const held = (id: number | undefined, name: string, token: number) =>
  `event: held\n${idLine(id)}data: ${JSON.stringify({ kind: "lock", name, token, ttl: 30, value: `v${token}` })}\n\n`;
const free = (id: number, name: string, token: number) =>
  `event: free\n${idLine(id)}data: ${JSON.stringify({ kind: "lock", name, token })}\n\n`;
const reset = (index: number, reason: string, id?: number) =>
  `event: reset\n${idLine(id)}data: ${JSON.stringify({ index, reason })}\n\n`;
const idLine = (id: number | undefined) => (id === undefined ? "" : `id: ${id}\n`);

async function take(it: AsyncIterator<LeaseholdEvent>, n: number): Promise<LeaseholdEvent[]> {
  const out: LeaseholdEvent[] = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

describe("observe (scripted fetch)", () => {
  it("yields typed events in order and resumes after a dropped stream with Last-Event-ID, mid-event cut included", async () => {
    const stub = stubFetch([
      // The first connection ends cleanly after two events.
      {
        stream: (push, end) => {
          push(held(5, "job", 5) + free(6, "job", 5));
          end();
        },
      },
      // The second breaks in the middle of an event: that event is not delivered.
      {
        stream: (push, _end, fail) => {
          push(`${held(7, "job", 7)}event: free\nid: 8\nda`);
          fail(new Error("cut"));
        },
      },
      { stream: (push) => push(`: hb\n\n${free(8, "job", 7)}${reset(20, "compacted", 20)}${held(21, "job", 21)}`) },
    ]);
    const retries: string[] = [];
    const stream = createClient({ url: "http://svc", fetch: stub.fetch }).observe(
      { prefix: "jo" },
      { onRetry: (err) => retries.push(err.code) },
    );
    const events = await take(stream, 6);
    expect(events.map((e) => `${e.type}:${e.id}`)).toEqual([
      "held:5",
      "free:6",
      "held:7",
      "free:8",
      "reset:20",
      "held:21",
    ]);
    expect(events[0]).toEqual({
      type: "held",
      id: "5",
      revision: 5,
      kind: "lock",
      name: "job",
      token: 5,
      ttl: 30,
      value: "v5",
    });
    expect(events[1]).toEqual({ type: "free", id: "6", revision: 6, kind: "lock", name: "job", token: 5 });
    expect(events[4]).toMatchObject({ type: "reset", id: "20", revision: 20, index: 20, reason: "compacted" });
    expect(stub.resumes).toEqual(["", "6", "7"]);
    expect(stub.urls[0]).toBe("http://svc/events?prefix=jo");
    expect(retries).toEqual(["network-error", "network-error"]);
    expect(stream.lastEventId).toBe("21");
    await stream.return();
    expect(stub.signals[2]?.aborted).toBe(true);
  });

  it("the events of one revision (only the last carries the id) come together, and a cut group comes again whole", async () => {
    const stub = stubFetch([
      {
        stream: (push, _end, fail) => {
          // A new stream: a reset and the current holders, one group at revision 40.
          push(reset(40, "start") + held(undefined, "a", 30) + held(40, "b", 38));
          // Then a group (revision 45) cut after its first event.
          push(free(42, "a", 30) + held(undefined, "c", 45));
          fail(new Error("cut"));
        },
      },
      { stream: (push) => push(held(undefined, "c", 45) + held(45, "d", 45)) },
    ]);
    const stream = createClient({ url: "http://svc", fetch: stub.fetch }).observe({ prefix: "" });
    const events = await take(stream, 6);
    expect(events.map((e) => `${e.type}:${e.type === "reset" ? e.reason : e.name}@${e.revision}`)).toEqual([
      "reset:start@40",
      "held:a@40",
      "held:b@40",
      "free:a@42",
      "held:c@45",
      "held:d@45",
    ]);
    // The resume point was the last whole revision, not the half-received one.
    expect(stub.resumes).toEqual(["", "42"]);
    await stream.return();
  });

  it("observe(name) yields only that name's events, while resuming after the others too", async () => {
    const stub = stubFetch([
      {
        stream: (push, end) => {
          push(held(1, "a", 1) + held(2, "ab", 2) + free(3, "ab", 2));
          end();
        },
      },
      { stream: (push) => push(free(4, "a", 1)) },
    ]);
    const stream = createClient({ url: "http://svc", fetch: stub.fetch }).observe("a", { after: "0" });
    expect((await take(stream, 2)).map((e) => e.id)).toEqual(["1", "4"]);
    expect(stub.resumes).toEqual(["0", "3"]);
    expect(stub.urls[0]).toBe("http://svc/events?prefix=a");
    await stream.return();
  });

  it("a 503 is retried after its Retry-After; a 401 rejects at once", async () => {
    const problem = (status: number, code: string) => ({
      status,
      headers: { "content-type": "application/problem+json", ...(status === 503 ? { "retry-after": "0" } : {}) },
      body: JSON.stringify({ type: "about:blank", title: code, status, code, detail: code }),
    });
    const stub = stubFetch([problem(503, "backend-unavailable"), { stream: (push) => push(held(3, "x", 3)) }]);
    const stream = createClient({ url: "http://svc", fetch: stub.fetch }).observe({ prefix: "" });
    expect((await take(stream, 1))[0]?.id).toBe("3");
    await stream.return();

    const denied = stubFetch([problem(401, "unauthorized")]);
    const failing = createClient({ url: "http://svc", fetch: denied.fetch }).observe({ prefix: "" });
    const err = await failing.next().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseholdError);
    expect(err).toMatchObject({ code: "unauthorized", status: 401 });
    expect(denied.resumes).toHaveLength(1);
  });

  it("an answer that is not an event stream rejects with invalid-response", async () => {
    const stub = stubFetch([{ status: 200, headers: { "content-type": "text/html" }, body: "<html>" }]);
    const err = await createClient({ url: "http://svc", fetch: stub.fetch })
      .observe({ prefix: "" })
      .next()
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "invalid-response" });
  });

  it("a connection silent past idleMs (no heartbeat) is reopened", async () => {
    const stub = stubFetch([
      { stream: (push) => push(held(1, "x", 1)) }, // then silence
      { stream: (push) => push(free(2, "x", 1)) },
    ]);
    const stream = createClient({ url: "http://svc", fetch: stub.fetch }).observe({ prefix: "" }, { idleMs: 150 });
    expect((await take(stream, 2)).map((e) => e.id)).toEqual(["1", "2"]);
    expect(stub.signals[0]?.aborted).toBe(true);
    expect(stub.resumes).toEqual(["", "1"]);
    await stream.return();
  });

  it("gives up after retryMs of failures with the last error", async () => {
    const down = { status: 502, body: "" };
    const stub = stubFetch([down, down, down, down, down, down, down, down, down, down]);
    const err = await createClient({ url: "http://svc", fetch: stub.fetch })
      .observe({ prefix: "" }, { retryMs: 300 })
      .next()
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 502 });
    expect(stub.resumes.length).toBeGreaterThan(1);
  });

  it("return() and the signal end a pending iteration and close its connection", async () => {
    const stub = stubFetch([{ stream: () => {} }, { stream: () => {} }]);
    const client = createClient({ url: "http://svc", fetch: stub.fetch });
    const stream = client.observe({ prefix: "" });
    const pending = stream.next();
    await until(() => stub.signals.length === 1, "the first connection");
    await stream.return();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(stub.signals[0]?.aborted).toBe(true);

    const controller = new AbortController();
    const seen: LeaseholdEvent[] = [];
    const loop = (async () => {
      for await (const e of client.observe({ prefix: "" }, { signal: controller.signal })) seen.push(e);
      return "ended";
    })();
    await until(() => stub.signals.length === 2, "the second connection");
    controller.abort();
    expect(await loop).toBe("ended");
    expect(stub.signals[1]?.aborted).toBe(true);
  });
});
