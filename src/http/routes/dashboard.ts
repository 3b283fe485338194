import type { Route } from "../route.js";

/**
 * The live lock dashboard at `/`: one static page, its script and stylesheet, served
 * by the service itself (no CDN). It polls the public API with the key the operator
 * types in, so it works on every runtime and respects the key's scope.
 */

/** The icon: a padlock, inline so that no browser asks for /favicon.ico (a 404, or a 401 with auth on). */
const ICON = `data:image/svg+xml,${encodeURIComponent(
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect x="2" y="7" width="12" height="8" rx="1.5" fill="#0b57d0"/><path d="M5 7V5a3 3 0 0 1 6 0v2" fill="none" stroke="#0b57d0" stroke-width="2"/></svg>',
)}`;

/**
 * The page loads only its own script and stylesheet (nothing inline) and calls only its
 * own origin; no other site may frame it, so a force-release button can't be clickjacked.
 */
const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>leasehold · held locks</title>
<link rel="icon" href="${ICON}">
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
  <div class="table-wrap">
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
  </div>
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
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .5rem .75rem; border-bottom: 1px solid var(--line); }
tbody tr:nth-child(odd) { background: var(--row); }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name { font-family: ui-monospace, monospace; word-break: break-all; }
/* Owners run to 256 characters: cut them short (the cell's title has the whole value). */
td.owner > span { display: block; max-width: min(20rem, 30vw); overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
td.ttl { white-space: nowrap; }
button { font: inherit; padding: .25rem .75rem; border: 1px solid var(--warn); color: var(--warn);
  background: transparent; border-radius: 4px; cursor: pointer; }
button:hover { background: var(--warn); color: var(--bg); }
#status { color: var(--muted); } #status.error { color: var(--warn); font-weight: 600; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
`;

/**
 * Seconds as a person reads them: "45 s", "59 min 59 s", "1 h 0 min", "1 d 0 h". Rounded
 * down, so it never shows more time than is left. Plain JavaScript, part of the page's script.
 */
export const FORMAT_DURATION_JS = `function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}`;

const JS = `"use strict";
(() => {
  ${FORMAT_DURATION_JS}
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
        const owner = cell("owner", "");
        const ownerText = document.createElement("span");
        ownerText.textContent = item.owner ?? "—";
        owner.append(ownerText);
        if (item.owner) owner.title = item.owner;
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
      const text = formatDuration(Math.ceil((row.deadline - now) / 1000));
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

  // Rows that can't be confirmed are not shown: after a failed load (a bad prefix, a
  // revoked key, the service down) the table is emptied, not left counting down.
  function clear() {
    for (const row of rows.values()) row.tr.remove();
    rows.clear();
    emptyEl.hidden = true;
  }

  const inputs = () => JSON.stringify([prefixInput.value, keyInput.value]);
  let loading = null; // the inputs of the load in flight
  let again = false;
  async function refresh() {
    if (loading !== null) {
      // The filter or key changed mid-load: load again for them once this one ends.
      if (inputs() !== loading) again = true;
      return;
    }
    const asked = (loading = inputs());
    const sentAt = Date.now();
    try {
      const items = await fetchAll();
      if (asked === inputs()) render(items, sentAt);
    } catch (err) {
      if (asked === inputs()) {
        clear();
        say("Cannot load locks: " + err.message, true);
      }
    } finally {
      loading = null;
      if (again) {
        again = false;
        refresh();
      }
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

export const dashboard: Route[] = [
  { method: "get", path: "/", access: "open", register: (app) => app.get("/", (c) => c.html(PAGE, 200, PAGE_HEADERS)) },
  {
    method: "get",
    path: "/dashboard/app.css",
    access: "open",
    register: (app) =>
      app.get("/dashboard/app.css", (c) => c.body(CSS, 200, { "content-type": "text/css; charset=utf-8" })),
  },
  {
    method: "get",
    path: "/dashboard/app.js",
    access: "open",
    register: (app) =>
      app.get("/dashboard/app.js", (c) => c.body(JS, 200, { "content-type": "text/javascript; charset=utf-8" })),
  },
];
