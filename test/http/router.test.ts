import { describe, expect, it } from "vitest";
import { appWithoutBackend } from "../support/app.js";

describe("routing", () => {
  it("every route fits Hono's RegExpRouter (its TrieRouter fallback costs CPU on every request)", async () => {
    const app = appWithoutBackend();
    // SmartRouter settles on one router at the first request.
    expect((await app.request("/healthz")).status).toBe(200);
    expect((app.router as unknown as { activeRouter: { name: string } }).activeRouter.name).toBe("RegExpRouter");
    const init = await app.request("/docs/assets/init.js");
    expect(init.status).toBe(200);
    expect(await init.text()).toContain("SwaggerUIBundle");
  });
});
