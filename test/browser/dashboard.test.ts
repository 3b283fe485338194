import { mkdirSync } from "node:fs";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "../support/browser.js";
import { call, sleep, uniqueName } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";

const SHOTS = new URL("../../test-output/screenshots/", import.meta.url).pathname;

/** Only the service itself may be reached: anything else is aborted and recorded. */
async function offline(page: Page, base: string): Promise<string[]> {
  const blocked: string[] = [];
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(base) || url.startsWith("data:")) return route.continue();
    blocked.push(url);
    return route.abort();
  });
  return blocked;
}

describe("in a real browser (Chromium)", () => {
  let svc: TestService;
  let browser: Browser;
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    svc = await startTestService();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await svc?.stop();
  });

  it("the dashboard shows a lock within 2 s, counts its TTL down, and drops it after release", async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 520 } });
    const blocked = await offline(page, svc.url);
    await page.goto(`${svc.url}/`);
    await expect.poll(() => page.locator("#status").textContent()).toMatch(/locks? held/);

    const name = uniqueName("dash");
    await call(svc.url, "POST", "/locks/cron:nightly-backup", { json: { ttl: 120, owner: "host-a" } });
    await call(svc.url, "POST", "/locks/deploy:web", { json: { ttl: 600, owner: "ci-runner-7" } });
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30, owner: "browser-test" } });
    const shownAt = Date.now();
    const row = page.locator(`tr[data-name="${name}"]`);
    await row.waitFor({ state: "visible", timeout: 2_000 });
    expect(Date.now() - shownAt).toBeLessThan(2_000);
    await expect.poll(() => row.locator("td.owner").textContent()).toBe("browser-test");
    expect(await row.locator("td.token").textContent()).toBe(String(g.json.token));

    const first = Number((await row.locator("td.ttl").textContent())?.replace(" s", ""));
    await sleep(2_200);
    const later = Number((await row.locator("td.ttl").textContent())?.replace(" s", ""));
    expect(first).toBeGreaterThan(20);
    expect(later).toBeLessThan(first);
    expect(later).toBeGreaterThanOrEqual(first - 4);
    await page.screenshot({ path: `${SHOTS}dashboard.png` });

    // Filtering by prefix narrows the table.
    await page.fill("#prefix", "deploy:");
    await expect.poll(() => page.locator("tbody tr").count()).toBe(1);
    await page.fill("#prefix", "");

    await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
    await row.waitFor({ state: "detached", timeout: 2_000 });
    // The lease handle never reaches the page.
    expect(await page.content()).not.toContain(g.json.lease);
    expect(blocked).toEqual([]);
    await page.close();
  });

  it("force-release from the dashboard is reachable by keyboard and works", async () => {
    // Force release needs an admin key, so this service has auth on.
    const admin = "dashboard-admin-key";
    const keyed = await startTestService({
      env: { LEASEHOLD_API_KEYS: JSON.stringify([{ key: admin, prefixes: [""], admin: true }]) },
    });
    try {
      const headers = { authorization: `Bearer ${admin}` };
      const page = await browser.newPage();
      await offline(page, keyed.url);
      page.on("dialog", (d) => d.accept());
      const name = uniqueName("kbd");
      await call(keyed.url, "POST", `/locks/${name}`, { json: { ttl: 60 }, headers });
      await page.goto(`${keyed.url}/?prefix=${encodeURIComponent(name)}`);
      await page.getByLabel(/API key/).fill(admin);
      await page.getByLabel(/API key/).dispatchEvent("change");
      const button = page.getByRole("button", { name: `Force release ${name}` });
      await button.waitFor({ timeout: 2_000 });
      // Labels are wired to their inputs.
      expect(await page.getByLabel("Filter by name prefix").inputValue()).toBe(name);
      await button.focus();
      await page.keyboard.press("Enter");
      await expect.poll(async () => (await call(keyed.url, "GET", `/locks/${name}`, { headers })).status).toBe(404);
      await page.close();
    } finally {
      await keyed.stop();
    }
  });

  it("/docs renders the API reference with no network access", async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const blocked = await offline(page, svc.url);
    await page.goto(`${svc.url}/docs`);
    await page.locator(".opblock").first().waitFor({ timeout: 10_000 });
    expect(await page.locator(".opblock").count()).toBeGreaterThanOrEqual(7);
    expect(await page.locator(".info .title").textContent()).toContain("leasehold");
    await page.screenshot({ path: `${SHOTS}docs.png` });
    expect(blocked).toEqual([]);
    await page.close();
  });
});
