import { afterEach, describe, expect, it, vi } from "vitest";

// Which transport the client's calls take is decided once per module, from the runtime's
// globals: a fresh copy of the module is loaded for each case.
async function freshNodeSend() {
  vi.resetModules();
  const { nodeSend } = await import("../../src/client/transport.js");
  return nodeSend();
}

describe("the client's transport on each runtime", () => {
  const had = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  afterEach(() => {
    if (had) Object.defineProperty(globalThis, "navigator", had);
    else delete (globalThis as { navigator?: unknown }).navigator;
  });

  it("Node: node:http", async () => {
    expect(await freshNodeSend()).toBeTypeOf("function");
  });

  // workerd with Node compatibility says it is Node 22 and lends a node:http made over
  // fetch: the client keeps fetch there (nothing to gain, one more layer).
  it("Cloudflare Workers with Node compatibility: fetch", async () => {
    Object.defineProperty(globalThis, "navigator", {
      value: { userAgent: "Cloudflare-Workers" },
      configurable: true,
      writable: true,
    });
    expect(await freshNodeSend()).toBeUndefined();
  });

  it("Deno and Bun (which say they are Node): fetch", async () => {
    for (const name of ["Deno", "Bun"]) {
      (globalThis as Record<string, unknown>)[name] = {};
      try {
        expect(await freshNodeSend()).toBeUndefined();
      } finally {
        delete (globalThis as Record<string, unknown>)[name];
      }
    }
  });
});
