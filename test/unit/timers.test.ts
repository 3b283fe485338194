import { describe, expect, it } from "vitest";
import { untilDeadline } from "../../src/timers.js";

describe("a deadline linked to other signals", () => {
  it("fires with the linked signal's reason, making none of its own", () => {
    const source = new AbortController();
    const reason = new Error("the caller hung up");
    const deadline = untilDeadline(Date.now() + 60_000, undefined, source.signal);
    const signal = deadline.signal;
    source.abort(reason);
    expect(signal.aborted).toBe(true);
    // The same object: a DOMException made per abort captures a stack each time.
    expect(signal.reason).toBe(reason);
    deadline.done();
  });

  it("a signal already aborted when linked fires it at once, with its reason", () => {
    const reason = new Error("gone before");
    const deadline = untilDeadline(Date.now() + 60_000, AbortSignal.abort(reason));
    expect(deadline.signal.aborted).toBe(true);
    expect(deadline.signal.reason).toBe(reason);
    deadline.done();
  });

  it("abort(reason) fires it with that reason", () => {
    const deadline = untilDeadline(Date.now() + 60_000, new AbortController().signal);
    const signal = deadline.signal;
    const reason = new Error("claimed");
    deadline.abort(reason);
    expect(signal.reason).toBe(reason);
    deadline.done();
  });

  it("running out of time still fires it", async () => {
    const deadline = untilDeadline(Date.now() + 5, new AbortController().signal);
    await new Promise<void>((resolve) => deadline.signal.addEventListener("abort", () => resolve(), { once: true }));
    expect(deadline.expired).toBe(true);
    deadline.done();
  });
});
