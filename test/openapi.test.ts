import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { openApiYaml } from "../src/http/routes/index.js";

describe("openapi.yaml", () => {
  it("is exactly what the zod route definitions generate (run `npm run openapi` after changing routes)", () => {
    const committed = readFileSync(new URL("../openapi.yaml", import.meta.url), "utf8");
    expect(committed).toBe(openApiYaml());
  });

  it("documents every endpoint of the HTTP contract", () => {
    const doc = parse(openApiYaml());
    expect(Object.keys(doc.paths).sort()).toEqual(
      [
        "/events",
        "/healthz",
        "/locks",
        "/locks/{name}",
        "/locks/{name}/renew",
        "/locks/{name}/fence",
        "/locks/{name}/state",
        "/readyz",
        "/semaphores",
        "/semaphores/{name}",
        "/semaphores/{name}/renew",
        "/semaphores/{name}/fence",
        "/semaphores/{name}/state",
      ].sort(),
    );
    for (const base of ["/locks", "/semaphores"]) {
      expect(Object.keys(doc.paths[`${base}/{name}`]).sort()).toEqual(["delete", "get", "post"]);
      const acquire = doc.paths[`${base}/{name}`].post;
      expect(Object.keys(acquire.responses)).toEqual(
        expect.arrayContaining(["200", "201", "202", "409", "410", "400", "413", "415", "503"]),
      );
      expect(Object.keys(acquire.requestBody.content).sort()).toEqual([
        "application/json",
        "application/x-www-form-urlencoded",
      ]);
      const release = doc.paths[`${base}/{name}`].delete;
      expect(release.parameters.map((p: { name: string }) => p.name)).toEqual(
        expect.arrayContaining(["lease", "ticket", "force", "token"]),
      );
    }
  });

  it("documents tickets, semaphores and their problems", () => {
    const { components } = parse(openApiYaml());
    const fields = (schema: string) => Object.keys(components.schemas[schema].properties ?? {});
    expect(fields("AcquireRequest")).toEqual([
      "ttl",
      "owner",
      "wait",
      "queue",
      "ticketTtl",
      "ticket",
      "value",
      "lockDelay",
    ]);
    // Lock-delay is a lock's alone.
    expect(fields("SemaphoreAcquireRequest")).toEqual([
      "limit",
      ...fields("AcquireRequest").filter((f: string) => f !== "lockDelay"),
    ]);
    expect(fields("Ticket")).toEqual(["ticket", "position", "ttl"]);
    expect(fields("LockInfo")).toContain("waiters");
    expect(fields("SemaphoreInfo")).toEqual(["name", "limit", "holders", "waiters", "index"]);
    expect(fields("ReleaseRequest")).toEqual(["lease", "ticket"]);
    const extension = (schema: string) => Object.keys(components.schemas[schema].allOf[1].properties);
    expect(extension("LockHeldProblem")).toEqual(["holder", "position", "reason"]);
    expect(extension("FenceStaleProblem")).toEqual(["current", "holders"]);
    expect(fields("StateRequest")).toEqual(["lease", "value"]);
    expect(fields("State")).toEqual(["value", "token", "revision", "updatedAt"]);
    expect(extension("LimitMismatchProblem")).toEqual(["limit"]);
    expect(extension("SemaphoreGrant")).toEqual(["limit"]);
  });

  it("documents published values, blocking reads and the event stream", () => {
    const doc = parse(openApiYaml());
    const fields = (schema: string) => Object.keys(doc.components.schemas[schema].properties ?? {});
    expect(fields("RenewRequest")).toEqual(["lease", "value"]);
    expect(fields("LockInfo")).toEqual(expect.arrayContaining(["value", "index"]));
    expect(fields("SemaphoreHolder")).toContain("value");
    expect(fields("Grant")).toContain("value");
    for (const base of ["/locks", "/semaphores"]) {
      const inspect = doc.paths[`${base}/{name}`].get;
      expect(inspect.parameters.map((p: { name: string }) => p.name)).toEqual(
        expect.arrayContaining(["index", "wait"]),
      );
      expect(Object.keys(inspect.responses[200].headers)).toEqual(["Leasehold-Index"]);
      expect(Object.keys(inspect.responses[404].headers)).toEqual(["Leasehold-Index"]);
    }
    const events = doc.paths["/events"].get;
    expect(Object.keys(events.responses[200].content)).toEqual(["text/event-stream"]);
    expect(Object.keys(events.responses)).toEqual(expect.arrayContaining(["200", "400", "401", "429", "503"]));
    expect(events.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`).sort()).toEqual(
      ["header:last-event-id", "query:kind", "query:lastEventId", "query:prefix"].sort(),
    );
  });
});
