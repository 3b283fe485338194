import { mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboardBundle } from "../../scripts/build-dashboard.js";
import { formatDuration } from "../../src/dashboard/format.js";
import { launchChromium } from "../support/browser.js";
import { call, uniqueName, until } from "../support/http.js";
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

/** Every failed response and console error or warning of a page, as lines. */
function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  return problems;
}

describe("the dashboard's duration format", () => {
  it("reads like a person would say it, never overstating what is left", () => {
    expect(formatDuration(0)).toBe("0 s");
    expect(formatDuration(45)).toBe("45 s");
    expect(formatDuration(59)).toBe("59 s");
    expect(formatDuration(60)).toBe("1 min 0 s");
    expect(formatDuration(3599)).toBe("59 min 59 s");
    expect(formatDuration(3600)).toBe("1 h 0 min");
    expect(formatDuration(7199)).toBe("1 h 59 min");
    expect(formatDuration(86_399)).toBe("23 h 59 min");
    expect(formatDuration(86_400)).toBe("1 d 0 h");
    expect(formatDuration(9_000_000_000)).toBe("104166 d 16 h");
  });
});

it("the served script is the bundle of src/dashboard/app.ts as it is now (run npm run dashboard)", async () => {
  const committed = readFileSync(new URL("../../src/dashboard/app.bundle.ts", import.meta.url), "utf8");
  expect(committed).toBe(await dashboardBundle());
});

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
    const problems = watchProblems(page);
    await page.goto(`${svc.url}/`);
    await expect.poll(() => page.locator("#status").textContent()).toMatch(/locks? held/);

    const name = uniqueName("dash");
    await call(svc.url, "POST", "/locks/cron:nightly-backup", { json: { ttl: 120, owner: "host-a" } });
    await call(svc.url, "POST", "/locks/deploy:web", {
      json: { ttl: 600, owner: "ci-runner-7", value: "10.0.0.7:8080" },
    });
    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 30, owner: "browser-test" } });
    const shownAt = Date.now();
    const row = page.locator(`tr[data-name="${name}"]`);
    await row.waitFor({ state: "visible", timeout: 2_000 });
    expect(Date.now() - shownAt).toBeLessThan(2_000);
    await expect.poll(() => row.locator("td.owner").textContent()).toBe("browser-test");
    expect(await row.locator("td.token").textContent()).toBe(String(g.json.token));

    const shownTtl = async () => Number((await row.locator("td.ttl").textContent())?.replace(" s", ""));
    const first = await shownTtl();
    await until(async () => (await shownTtl()) < first, "the shown TTL to count down");
    const later = await shownTtl();
    expect(first).toBeGreaterThan(20);
    expect(later).toBeLessThan(first);
    expect(later).toBeGreaterThanOrEqual(first - 4);
    await page.screenshot({ path: `${SHOTS}dashboard.png` });

    // Filtering by prefix narrows the table.
    await page.fill("#prefix", "deploy:");
    await expect.poll(() => page.locator("#locks tbody tr").count()).toBe(1);
    await page.fill("#prefix", "");

    await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`);
    await row.waitFor({ state: "detached", timeout: 2_000 });
    // The lease handle never reaches the page.
    expect(await page.content()).not.toContain(g.json.lease);
    expect(blocked).toEqual([]);
    // The page brings its own icon (so browsers don't ask for /favicon.ico), allowed by its CSP.
    expect(await page.locator('link[rel="icon"]').count()).toBe(1);
    const icon = await page.locator('link[rel="icon"]').getAttribute("href");
    expect(icon).toMatch(/^data:image\/svg\+xml,/);
    const iconWidth = await page.evaluate(async (src) => {
      const img = new Image();
      img.src = src ?? "";
      await img.decode();
      return img.naturalWidth;
    }, icon);
    expect(iconWidth).toBeGreaterThan(0);
    // No failed request and no console error (a CSP violation included).
    expect(problems).toEqual([]);
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
      // A change arrives while the button has focus: the table is re-read and redrawn, and
      // the focus stays where the keyboard put it (redrawing once moved every row, which
      // took the focus away, and the Enter below then did nothing).
      const loadsEnded = () => page.evaluate(() => Number(document.body.dataset.loads ?? "0"));
      const before = await loadsEnded();
      const other = `${name}-other`;
      await call(keyed.url, "POST", `/locks/${other}`, { json: { ttl: 60 }, headers });
      await page.locator(`tr[data-name="${other}"]`).waitFor({ timeout: 5_000 });
      await expect.poll(loadsEnded, { timeout: 5_000 }).toBeGreaterThan(before);
      expect(await page.locator("#locks tbody tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.name))).toEqual([
        name,
        other,
      ]);
      expect(await page.evaluate(() => document.activeElement?.getAttribute("aria-label"))).toBe(
        `Force release ${name}`,
      );
      await page.keyboard.press("Enter");
      // The confirm dialog, the request and the answer: seconds on a loaded machine (poll's default is 1 s).
      await expect
        .poll(async () => (await call(keyed.url, "GET", `/locks/${name}`, { headers })).status, { timeout: 15_000 })
        .toBe(404);
      // Only the lock whose button it was.
      expect((await call(keyed.url, "GET", `/locks/${other}`, { headers })).status).toBe(200);
      await page.close();
    } finally {
      await keyed.stop();
    }
  });

  it("a 256-character owner is cut short with an ellipsis (full value on hover) and the table stays in the viewport", async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 600 } });
    await offline(page, svc.url);
    const name = uniqueName("long-owner");
    const owner = `${"x".repeat(120)}-${"y".repeat(135)}`;
    expect(owner).toHaveLength(256);
    expect((await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 60, owner } })).status).toBe(201);
    await page.goto(`${svc.url}/?prefix=${encodeURIComponent(name)}`);
    const cell = page.locator(`tr[data-name="${name}"] td.owner`);
    await cell.waitFor({ timeout: 2_000 });
    expect(await cell.textContent()).toBe(owner);
    expect(await cell.getAttribute("title")).toBe(owner);
    const m = await page.evaluate(() => {
      const root = document.documentElement;
      const table = document.querySelector("#locks") as HTMLElement;
      const td = document.querySelector("td.owner") as HTMLElement;
      const text = td.firstElementChild as HTMLElement | null;
      return {
        viewport: root.clientWidth,
        pageWidth: root.scrollWidth,
        tableRight: table.getBoundingClientRect().right,
        cellWidth: td.getBoundingClientRect().width,
        clipped: text
          ? text.scrollWidth > text.clientWidth && getComputedStyle(text).textOverflow === "ellipsis"
          : false,
      };
    });
    expect(m.pageWidth).toBeLessThanOrEqual(m.viewport);
    expect(m.tableRight).toBeLessThanOrEqual(m.viewport);
    expect(m.cellWidth).toBeLessThan(m.viewport / 2);
    expect(m.clipped).toBe(true);
    await page.close();
  });

  it("a listing read before a grant's event leaves that grant's row in place, its TTL shown and its button focused", async () => {
    const page = await browser.newPage();
    await offline(page, svc.url);
    const base = uniqueName("stale-listing");
    await page.goto(`${svc.url}/?prefix=${encodeURIComponent(base)}`);
    await expect.poll(() => page.evaluate(() => document.body.dataset.stream)).toBe("live");
    await expect.poll(() => page.evaluate(() => Number(document.body.dataset.loads ?? "0"))).toBeGreaterThan(0);

    // The next listing is read from the service at once but handed to the page only when
    // the test says: it is then older than what the event stream has shown since.
    let listingRead!: () => void;
    const read = new Promise<void>((r) => {
      listingRead = r;
    });
    let handOver!: () => void;
    const gate = new Promise<void>((r) => {
      handOver = r;
    });
    let held = false;
    await page.route(
      (url) => url.pathname === "/locks",
      async (route) => {
        if (held) return route.fallback();
        held = true;
        const response = await route.fetch();
        listingRead();
        await gate;
        await route.fulfill({ response });
      },
    );
    const first = `${base}-a`;
    const later = `${base}-b`;
    await call(svc.url, "POST", `/locks/${first}`, { json: { ttl: 50 } }); // its event asks for the listing
    await read;
    await call(svc.url, "POST", `/locks/${later}`, { json: { ttl: 50 } });
    const row = page.locator(`tr[data-name="${later}"]`);
    await row.waitFor({ timeout: 5_000 });
    // Shown from its event alone, with its TTL at once (not at the next tick).
    expect(await row.locator("td.ttl").textContent()).toMatch(/^(49|50) s$/);
    await row.evaluate((tr) => {
      tr.dataset.mark = "the first drawing";
    });
    await page.getByRole("button", { name: `Force release ${later}` }).focus();
    const loads = await page.evaluate(() => Number(document.body.dataset.loads ?? "0"));
    handOver();
    await expect.poll(() => page.evaluate(() => Number(document.body.dataset.loads ?? "0"))).toBeGreaterThan(loads);
    // The stale listing lacked the later grant: its row is the same element, not redrawn.
    expect(await row.getAttribute("data-mark")).toBe("the first drawing");
    expect(await row.locator("td.ttl").textContent()).toMatch(/^(4\d|50) s$/);
    expect(await page.evaluate(() => document.activeElement?.getAttribute("aria-label"))).toBe(
      `Force release ${later}`,
    );
    expect(await page.locator("#locks tbody tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.name))).toEqual([
      first,
      later,
    ]);
    await page.close();
  });

  it("an invalid prefix clears the table and says why, instead of leaving live rows of the last answer", async () => {
    const page = await browser.newPage();
    await offline(page, svc.url);
    const name = uniqueName("stale");
    await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 60 } });
    await page.goto(`${svc.url}/?prefix=${encodeURIComponent(name)}`);
    await page.locator(`tr[data-name="${name}"]`).waitFor({ timeout: 2_000 });
    await page.fill("#prefix", `${name}/x`);
    await expect.poll(() => page.locator("#status").textContent()).toMatch(/prefix must use the lock name alphabet/);
    expect(await page.locator("#status").getAttribute("class")).toContain("error");
    expect(await page.locator("#locks tbody tr").count()).toBe(0);
    expect(await page.getByRole("button", { name: /Force release/ }).count()).toBe(0);
    expect(await page.locator("#empty").isHidden()).toBe(true);
    // Still so after the next polls.
    await page.waitForResponse((r) => r.url().includes("/locks?") && r.status() === 400);
    expect(await page.locator("#locks tbody tr").count()).toBe(0);
    // A valid prefix brings the rows back.
    await page.fill("#prefix", name);
    await page.locator(`tr[data-name="${name}"]`).waitFor({ timeout: 2_000 });
    await page.close();
  });

  it("shows how many are in line for a lock, and held semaphores with their holders and line", async () => {
    const page = await browser.newPage();
    await offline(page, svc.url);
    const problems = watchProblems(page);
    const base = uniqueName("lines");
    const lock = await call(svc.url, "POST", `/locks/${base}-lock`, { json: { ttl: 60 } });
    const ticket = await call(svc.url, "POST", `/locks/${base}-lock`, { json: { queue: true } });
    expect(ticket.status).toBe(202);
    const sem = `/semaphores/${base}-sem`;
    const first = await call(svc.url, "POST", sem, { json: { limit: 3, ttl: 60, owner: "worker-1" } });
    const second = await call(svc.url, "POST", sem, { json: { limit: 3, ttl: 60 } });
    await page.goto(`${svc.url}/?prefix=${encodeURIComponent(base)}`);
    const lockRow = page.locator(`#locks tr[data-name="${base}-lock"]`);
    await expect.poll(() => lockRow.locator("td.waiters").textContent()).toBe("1");
    const semRow = page.locator(`#semaphores tr[data-name="${base}-sem"]`);
    await semRow.waitFor({ timeout: 2_000 });
    expect(await semRow.locator("td.held").textContent()).toBe("2 / 3");
    expect(await semRow.locator("td.holders").textContent()).toBe(
      `${first.json.token}: worker-1, ${second.json.token}: —`,
    );
    expect(await semRow.locator("td.waiters").textContent()).toBe("0");
    await expect.poll(() => page.locator("#status").textContent()).toBe("1 lock held · 1 semaphore held");
    await page.screenshot({ path: `${SHOTS}dashboard-lines.png` });
    // The line empties when the ticket leaves (lines are not events: the next re-read
    // of the listing, within 5 s, shows it); no handle ever reaches the page.
    await call(svc.url, "DELETE", `/locks/${base}-lock?ticket=${ticket.json.ticket}`);
    await expect.poll(() => lockRow.locator("td.waiters").textContent(), { timeout: 8_000 }).toBe("0");
    const content = await page.content();
    for (const secret of [lock.json.lease, ticket.json.ticket, first.json.lease, second.json.lease]) {
      expect(content).not.toContain(secret);
    }
    // With no semaphore held, the section goes away.
    await call(svc.url, "DELETE", `${sem}?lease=${first.json.lease}`);
    await call(svc.url, "DELETE", `${sem}?lease=${second.json.lease}`);
    await expect.poll(() => page.locator("#semaphores-section").isHidden()).toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  });

  it("the event stream shows a grant, its new published value and its release within 200 ms each", async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 400 } });
    await offline(page, svc.url);
    const problems = watchProblems(page);
    const name = uniqueName("live");
    await page.goto(`${svc.url}/?prefix=${encodeURIComponent(name)}`);
    await page.locator('body[data-stream="live"]').waitFor({ timeout: 5_000 });
    await expect.poll(() => page.locator("#status").textContent()).toBe("0 locks held");
    // From now on the listings never answer: whatever changes on the page came by the stream.
    let held = 0;
    await page.route(/\/(locks|semaphores)\?/, () => {
      held++;
    });
    // The page notes when the row appears, shows a value, and goes (a MutationObserver's
    // time, by the same clock as this process's).
    await page.evaluate((n) => {
      const seen: Record<string, number> = {};
      (window as unknown as { seen: typeof seen }).seen = seen;
      const tbody = document.querySelector("#locks tbody") as HTMLElement;
      new MutationObserver(() => {
        const row = tbody.querySelector(`tr[data-name="${CSS.escape(n)}"]`);
        const now = Date.now();
        if (row) seen.added ??= now;
        else if (seen.added !== undefined) seen.removed ??= now;
        const value = row?.querySelector("td.value")?.textContent;
        if (value) seen[`value:${value}`] ??= now;
      }).observe(tbody, { childList: true, subtree: true, characterData: true });
    }, name);
    const noted = (what: string) =>
      page
        .waitForFunction((w) => (window as unknown as { seen: Record<string, number> }).seen[w], what, {
          timeout: 2_000,
        })
        .then((h) => h.jsonValue() as Promise<number>);

    const g = await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 600, owner: "live", value: "10.0.0.7" } });
    expect(g.status).toBe(201);
    const grantedAt = Date.now();
    expect((await noted("added")) - grantedAt).toBeLessThan(200);
    expect((await noted("value:10.0.0.7")) - grantedAt).toBeLessThan(200);
    const row = page.locator(`tr[data-name="${name}"]`);
    expect(await row.locator("td.token").textContent()).toBe(String(g.json.token));
    expect(await row.locator("td.owner").textContent()).toBe("live");

    const r = await call(svc.url, "PUT", `/locks/${name}/renew`, { json: { lease: g.json.lease, value: "10.0.0.8" } });
    expect(r.status).toBe(200);
    const proclaimedAt = Date.now();
    expect((await noted("value:10.0.0.8")) - proclaimedAt).toBeLessThan(200);

    expect((await call(svc.url, "DELETE", `/locks/${name}?lease=${g.json.lease}`)).status).toBe(204);
    const releasedAt = Date.now();
    expect((await noted("removed")) - releasedAt).toBeLessThan(200);
    expect(await page.locator("#status").textContent()).toBe("0 locks held");
    // The listings were asked again (after each change) and never answered.
    expect(held).toBeGreaterThan(0);
    expect(await page.content()).not.toContain(g.json.lease);
    expect(problems).toEqual([]);
    await page.close();
  });

  it("without the stream (refused), the dashboard polls the listings and says so", async () => {
    const page = await browser.newPage();
    await offline(page, svc.url);
    // The stream is refused, as by an instance at its limit of streams.
    await page.route(/\/events\?/, (route) =>
      route.fulfill({
        status: 429,
        contentType: "application/problem+json",
        headers: { "retry-after": "1" },
        body: JSON.stringify({ type: "about:blank", status: 429, code: "too-many-streams", title: "Too Many" }),
      }),
    );
    const name = uniqueName("polled");
    await page.goto(`${svc.url}/?prefix=${encodeURIComponent(name)}`);
    await expect.poll(() => page.locator("#live").textContent()).toBe("polling");
    await call(svc.url, "POST", `/locks/${name}`, { json: { ttl: 60, value: "by-poll" } });
    const row = page.locator(`tr[data-name="${name}"]`);
    await row.waitFor({ timeout: 3_000 });
    expect(await row.locator("td.value").textContent()).toBe("by-poll");
    await page.close();
  });

  it("long TTLs read in hours and minutes", async () => {
    const page = await browser.newPage();
    await offline(page, svc.url);
    const base = uniqueName("ttl");
    await call(svc.url, "POST", `/locks/${base}-hour`, { json: { ttl: 3600 } });
    await call(svc.url, "POST", `/locks/${base}-day`, { json: { ttl: 86_399 } });
    await call(svc.url, "POST", `/locks/${base}-short`, { json: { ttl: 45 } });
    await page.goto(`${svc.url}/?prefix=${encodeURIComponent(base)}`);
    const ttl = (suffix: string) => page.locator(`tr[data-name="${base}-${suffix}"] td.ttl`);
    await expect.poll(() => ttl("hour").textContent()).toMatch(/^(1 h 0 min|59 min 5\d s)$/);
    expect(await ttl("day").textContent()).toMatch(/^23 h 59 min$/);
    expect(await ttl("short").textContent()).toMatch(/^4\d s$/);
    await page.close();
  });

  it("the dashboard page cannot be framed and runs under a strict Content-Security-Policy", async () => {
    const r = await fetch(`${svc.url}/`);
    expect(r.headers.get("x-frame-options")).toBe("DENY");
    const csp = r.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(r.headers.get("x-content-type-options")).toBe("nosniff");

    // A page of another origin (a real loopback server, as Chromium lets only local
    // pages frame local ones) that frames the dashboard gets nothing in the frame.
    const framer = createServer((_req, res) => {
      res.setHeader("content-type", "text/html");
      res.end(`<iframe src="${svc.url}/"></iframe>`);
    });
    await new Promise<void>((resolve) => framer.listen(0, "127.0.0.1", resolve));
    const page = await browser.newPage();
    try {
      const loaded: string[] = [];
      page.on("response", (res) => loaded.push(res.url()));
      // "load" waits for the frame's own load, refused or not.
      await page.goto(`http://127.0.0.1:${(framer.address() as AddressInfo).port}/`, { waitUntil: "load" });
      expect(loaded).toContain(`${svc.url}/`);
      const frame = page.frames().find((f) => f !== page.mainFrame());
      expect(frame).toBeDefined();
      expect(await frame?.locator("#status").count()).toBe(0);
    } finally {
      await page.close();
      framer.closeAllConnections();
      await new Promise((resolve) => framer.close(resolve));
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
