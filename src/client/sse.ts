/**
 * A Server-Sent Events parser (the WHATWG "event stream" format), written out here so
 * that the client needs no EventSource: Node before 22, Workers and Deno have none, and
 * EventSource can send neither an Authorization header nor a chosen Last-Event-ID.
 */

/**
 * One dispatched event: `event` defaults to "message"; `id` is the last event ID in
 * force, which the event's own block set when `hasId` (else an earlier block did).
 */
export interface SseEvent {
  event: string;
  data: string;
  id: string;
  hasId: boolean;
}

/**
 * Feeds on decoded text in arbitrary chunks (a line may be split anywhere, even between
 * CR and LF) and calls back once per complete event, in order. Comments (`:` lines, the
 * server's heartbeats) dispatch nothing. `retry` reports the server's reconnection delay
 * in ms.
 */
export class SseParser {
  #buffer = "";
  /** The previous chunk ended in CR: a leading LF of the next one belongs to that line end. */
  #pendingCr = false;
  #bomChecked = false;
  #event = "";
  #data: string[] = [];
  /** The id field seen last; it takes effect when its block ends. */
  #idBuffer = "";
  /** The current block has an id field. */
  #blockHasId = false;
  #id = "";
  readonly #on: { event(e: SseEvent): void; retry?(ms: number): void };

  constructor(lastEventId: string, on: { event(e: SseEvent): void; retry?(ms: number): void }) {
    this.#id = lastEventId;
    this.#idBuffer = lastEventId;
    this.#on = on;
  }

  /** The id of the last complete block (sent as `Last-Event-ID` on reconnect). */
  get lastEventId(): string {
    return this.#id;
  }

  push(text: string): void {
    if (!this.#bomChecked && text.length > 0) {
      this.#bomChecked = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.#pendingCr && text.startsWith("\n")) text = text.slice(1);
    this.#pendingCr = false;
    this.#buffer += text;
    let start = 0;
    for (;;) {
      const cr = this.#buffer.indexOf("\r", start);
      const lf = this.#buffer.indexOf("\n", start);
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
      if (end === -1) break;
      this.#line(this.#buffer.slice(start, end));
      if (this.#buffer[end] === "\r") {
        if (end + 1 === this.#buffer.length) {
          this.#pendingCr = true;
          start = end + 1;
          break;
        }
        start = this.#buffer[end + 1] === "\n" ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
    }
    this.#buffer = this.#buffer.slice(start);
  }

  #line(line: string): void {
    if (line === "") {
      this.#dispatch();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.#event = value;
        break;
      case "data":
        this.#data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) {
          this.#idBuffer = value;
          this.#blockHasId = true;
        }
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.#on.retry?.(Number(value));
        break;
      default:
      // Unknown fields are ignored, as the format requires.
    }
  }

  #dispatch(): void {
    this.#id = this.#idBuffer;
    const event = this.#event || "message";
    const data = this.#data;
    const hasId = this.#blockHasId;
    this.#event = "";
    this.#data = [];
    this.#blockHasId = false;
    // A block without data lines dispatches nothing (its id, if any, still counts).
    if (data.length === 0) return;
    this.#on.event({ event, data: data.join("\n"), id: this.#id, hasId });
  }
}
