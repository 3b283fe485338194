import type { App } from "../deps.js";

/**
 * The live lock dashboard at `/`: one static page, its script and stylesheet, served
 * by the service itself (no CDN). It polls the public API with the key the operator
 * types in, so it works on every runtime and respects the key's scope.
 */
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>leasehold · held locks</title>
<link rel="stylesheet" href="dashboard/app.css">
</head>
<body>
<header>
  <h1>leasehold <span class="sub">held locks</span></h1>
  <nav><a href="docs">API reference</a></nav>
</header>
<main>
  <form id="controls" autocomplete="off">
    <div class="field">
      <label for="prefix">Filter by name prefix</label>
      <input id="prefix" name="prefix" type="search" placeholder="cron:" spellcheck="false">
    </div>
    <div class="field">
      <label for="apikey">API key <span class="hint">(only when auth is on; kept in this tab)</span></label>
      <input id="apikey" name="apikey" type="password" placeholder="Bearer key">
    </div>
  </form>
  <p id="status" role="status" aria-live="polite">Loading…</p>
  <table id="locks" aria-describedby="status">
    <caption class="visually-hidden">Locks currently held, in name order</caption>
    <thead>
      <tr>
        <th scope="col">Name</th>
        <th scope="col">Owner</th>
        <th scope="col" class="num">Token</th>
        <th scope="col" class="num">Expires in</th>
        <th scope="col"><span class="visually-hidden">Actions</span></th>
      </tr>
    </thead>
    <tbody></tbody>
  </table>
  <p id="empty" hidden>No locks are held.</p>
</main>
<script src="dashboard/app.js"></script>
</body>
</html>
`;

const CSS = `:root { color-scheme: light dark; --fg: #111; --bg: #fff; --muted: #555; --line: #d0d0d0;
  --accent: #0b57d0; --warn: #a30000; --row: #f5f7fa; }
@media (prefers-color-scheme: dark) { :root { --fg: #eee; --bg: #121212; --muted: #bbb; --line: #3a3a3a;
  --accent: #8ab4f8; --warn: #ff8a80; --row: #1d1f22; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: baseline; justify-content: space-between; padding: 1rem 1.5rem;
  border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 1.4rem; } .sub { color: var(--muted); font-weight: 400; }
a { color: var(--accent); }
main { padding: 1rem 1.5rem; max-width: 72rem; }
form { display: flex; flex-wrap: wrap; gap: 1rem 2rem; margin-bottom: .5rem; }
.field { display: flex; flex-direction: column; gap: .25rem; }
label { font-weight: 600; } .hint { font-weight: 400; color: var(--muted); font-size: .875rem; }
input { font: inherit; padding: .4rem .6rem; border: 1px solid var(--muted); border-radius: 4px;
  color: var(--fg); background: var(--bg); min-width: 16rem; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .5rem .75rem; border-bottom: 1px solid var(--line); }
tbody tr:nth-child(odd) { background: var(--row); }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name { font-family: ui-monospace, monospace; word-break: break-all; }
button { font: inherit; padding: .25rem .75rem; border: 1px solid var(--warn); color: var(--warn);
  background: transparent; border-radius: 4px; cursor: pointer; }
button:hover { background: var(--warn); color: var(--bg); }
#status { color: var(--muted); } #status.error { color: var(--warn); font-weight: 600; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
`;

const JS = `"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const prefixInput = $("prefix");
  const keyInput = $("apikey");
  const statusEl = $("status");
  const body = document.querySelector("#locks tbody");
  const emptyEl = $("empty");
  const rows = new Map(); // name -> { tr, deadline }
  keyInput.value = sessionStorage.getItem("leasehold-key") || "";
  prefixInput.value = new URLSearchParams(location.search).get("prefix") || "";

  const headers = () => {
    const key = keyInput.value.trim();
    return key ? { authorization: "Bearer " + key } : {};
  };
  const say = (text, isError) => {
    if (statusEl.textContent !== text) statusEl.textContent = text;
    statusEl.classList.toggle("error", Boolean(isError));
  };

  async function fetchAll() {
    const items = [];
    let cursor;
    for (let page = 0; page < 10; page++) {
      const q = new URLSearchParams({ limit: "1000" });
      if (prefixInput.value) q.set("prefix", prefixInput.value);
      if (cursor) q.set("cursor", cursor);
      const res = await fetch("locks?" + q, { headers: headers(), cache: "no-store" });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(data.detail || "HTTP " + res.status);
      items.push(...data.items);
      cursor = data.cursor;
      if (!cursor) break;
    }
    return items;
  }

  function render(items, receivedAt) {
    const seen = new Set();
    for (const item of items) {
      seen.add(item.name);
      let row = rows.get(item.name);
      if (!row || row.token !== item.token) {
        row?.tr.remove();
        const tr = document.createElement("tr");
        tr.dataset.name = item.name;
        const cell = (cls, text) => {
          const td = document.createElement("td");
          if (cls) td.className = cls;
          td.textContent = text;
          tr.append(td);
          return td;
        };
        cell("name", item.name);
        cell("owner", item.owner ?? "—");
        cell("num token", String(item.token));
        const ttlCell = cell("num ttl", "");
        const actions = cell("", "");
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Force release";
        button.setAttribute("aria-label", "Force release " + item.name);
        button.addEventListener("click", () => forceRelease(item.name));
        actions.append(button);
        row = { tr, ttlCell, token: item.token, deadline: 0 };
        rows.set(item.name, row);
      }
      row.deadline = receivedAt + item.ttl * 1000;
    }
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
    // Keep name order (the API's order) without rebuilding rows.
    for (const item of items) body.append(rows.get(item.name).tr);
    emptyEl.hidden = items.length > 0;
    tick();
    say(items.length === 1 ? "1 lock held" : items.length + " locks held");
  }

  function tick() {
    const now = Date.now();
    for (const row of rows.values()) {
      const left = Math.max(0, Math.ceil((row.deadline - now) / 1000));
      const text = left + " s";
      if (row.ttlCell.textContent !== text) row.ttlCell.textContent = text;
    }
  }

  async function forceRelease(name) {
    if (!confirm("Force-release " + name + "? Its holder will lose it.")) return;
    const res = await fetch("locks/" + encodeURIComponent(name) + "?force=true", {
      method: "DELETE",
      headers: headers(),
    });
    if (res.status === 204) say("Released " + name);
    else {
      const data = await res.json().catch(() => ({}));
      say("Could not release " + name + ": " + (data.detail || "HTTP " + res.status), true);
    }
    refresh();
  }

  let inFlight = false;
  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    const sentAt = Date.now();
    try {
      render(await fetchAll(), sentAt);
    } catch (err) {
      say("Cannot load locks: " + err.message, true);
    } finally {
      inFlight = false;
    }
  }

  keyInput.addEventListener("change", () => {
    sessionStorage.setItem("leasehold-key", keyInput.value.trim());
    refresh();
  });
  prefixInput.addEventListener("input", () => {
    const url = new URL(location.href);
    if (prefixInput.value) url.searchParams.set("prefix", prefixInput.value);
    else url.searchParams.delete("prefix");
    history.replaceState(null, "", url);
    refresh();
  });
  $("controls").addEventListener("submit", (e) => e.preventDefault());
  setInterval(refresh, 1000);
  setInterval(tick, 250);
  refresh();
})();
`;

export function registerDashboard(app: App) {
  app.get("/", (c) => c.html(PAGE));
  app.get("/dashboard/app.css", (c) => c.body(CSS, 200, { "content-type": "text/css; charset=utf-8" }));
  app.get("/dashboard/app.js", (c) => c.body(JS, 200, { "content-type": "text/javascript; charset=utf-8" }));
}
