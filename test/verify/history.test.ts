import { describe, expect, it } from "vitest";
import { History, outcomeType, secretHash } from "../../scripts/verify/history.js";

// What a history line says about each kind of request and answer, and that no secret
// (lease handle, ticket, Idempotency-Key) reaches it.

const history = () => {
  let seq = 0;
  let now = 0;
  const h = new History({ seq: () => ++seq, now: () => now });
  const call = (
    f: Parameters<History["invoke"]>[1]["f"],
    path: string,
    o: {
      body?: Record<string, unknown>;
      headers?: Record<string, string>;
      status: number | "hung up";
      answer?: unknown;
    },
  ) => {
    const p = h.invoke("c1", {
      f,
      path,
      body: o.body,
      headers: o.headers,
      caller: "a1",
      instance: 2,
      seq: ++seq,
      time: ++now,
    });
    h.complete(p, { status: o.status, body: o.answer, seq: ++seq, time: ++now });
    return h.events.slice(-2);
  };
  return { h, call };
};

describe("history lines", () => {
  it("an acquire: its line, caller and instance, the key's hash, then the grant's token and handle hash", () => {
    const { call } = history();
    const [invoke, ok] = call("acquire", "/semaphores/s:1", {
      body: { ttl: 2, limit: 3, owner: "c1", wait: 1.5 },
      headers: { "idempotency-key": "secret-key" },
      status: 201,
      answer: { token: 42, lease: "secret-handle", ttl: 2, limit: 3 },
    });
    expect(invoke).toMatchObject({
      index: 0,
      type: "invoke",
      op: 0,
      process: "c1",
      f: "acquire",
      kind: "semaphore",
      name: "s:1",
      caller: "a1",
      instance: 2,
      value: { ttl: 2, limit: 3, owner: "c1", wait: 1.5, key: secretHash("secret-key") },
    });
    expect(ok).toMatchObject({
      index: 1,
      type: "ok",
      op: 0,
      status: 201,
      value: { token: 42, grant: secretHash("secret-handle"), ttl: 2, limit: 3 },
    });
    expect(typeof ok?.wall).toBe("number");
    expect((ok?.seq ?? 0) > (invoke?.seq ?? 0) && (ok?.time ?? 0) > (invoke?.time ?? 0)).toBe(true);
  });

  it("a 202's ticket and position, an inspect's holders (lock and semaphore shapes), a force's token", () => {
    const { call } = history();
    expect(
      call("acquire", "/locks/q", {
        body: { ttl: 2, queue: true },
        status: 202,
        answer: { ticket: "t-secret", position: 3 },
      })[1]?.value,
    ).toEqual({
      ticket: secretHash("t-secret"),
      position: 3,
    });
    expect(
      call("inspect", "/locks/q", { status: 200, answer: { name: "q", token: 7, owner: "o", waiters: 2 } })[1]?.value,
    ).toEqual({
      holders: [{ token: 7, owner: "o" }],
      waiters: 2,
    });
    expect(
      call("inspect", "/semaphores/s", {
        status: 200,
        answer: { limit: 2, holders: [{ token: 5 }, { token: 9 }], waiters: 0 },
      })[1]?.value,
    ).toEqual({ holders: [{ token: 5 }, { token: 9 }], waiters: 0 });
    expect(call("force", "/semaphores/s?force=true&token=9", { status: 204 })[0]?.value).toEqual({ token: 9 });
    expect(call("leave", "/locks/q?ticket=t-secret", { status: 204 })[0]?.value).toEqual({
      ticket: secretHash("t-secret"),
    });
  });

  it("outcomes: 2xx ok, 4xx fail (with the problem's code), and unknown outcomes info", () => {
    expect([200, 204, 409, 410, 503, 500, 0, -1, undefined].map(outcomeType)).toEqual([
      "ok",
      "ok",
      "fail",
      "fail",
      "info",
      "info",
      "info",
      "info",
      "info",
    ]);
    const { call } = history();
    expect(
      call("renew", "/locks/x/renew", { body: { lease: "h" }, status: 410, answer: { code: "lock-lost" } })[1],
    ).toMatchObject({
      type: "fail",
      status: 410,
      value: { code: "lock-lost" },
    });
    expect(call("release", "/locks/x", { body: { lease: "h" }, status: 0 })[1]).toMatchObject({
      type: "info",
      error: "connection failed",
    });
    expect(call("release", "/locks/x", { body: { lease: "h" }, status: -1 })[1]).toMatchObject({
      type: "info",
      error: "timeout",
    });
    const hungUp = call("acquire", "/locks/x", { body: { ttl: 2 }, status: "hung up" })[1];
    expect(hungUp).toMatchObject({ type: "info", error: "hung up" });
    expect(hungUp?.status).toBeUndefined();
  });

  it("faults are the nemesis's: invoke when injected, info when healed", () => {
    const { h } = history();
    h.fault("kill leader m1").healed();
    expect(h.events.map((e) => [e.process, e.f, e.type, e.fault, e.op])).toEqual([
      ["nemesis", "fault", "invoke", "kill leader m1", 0],
      ["nemesis", "fault", "info", "kill leader m1", 0],
    ]);
  });

  it("no secret reaches a line", () => {
    const { h, call } = history();
    call("acquire", "/locks/x", {
      body: { ttl: 2 },
      headers: { "idempotency-key": "KEY-SECRET" },
      status: 201,
      answer: { token: 1, lease: "HANDLE-SECRET", ttl: 2 },
    });
    call("redeem", "/locks/x", {
      body: { ticket: "TICKET-SECRET" },
      status: 202,
      answer: { ticket: "TICKET-SECRET", position: 0 },
    });
    expect(JSON.stringify(h.events)).not.toMatch(/SECRET/);
  });
});
