/**
 * The live dashboard's page and stylesheet: held locks with their published values, and
 * semaphores when any are held (its script is app.ts). Served by the service itself at
 * `/` (no CDN).
 */

/** The icon: a padlock, inline so that no browser asks for /favicon.ico (a 404, or a 401 with auth on). */
const ICON = `data:image/svg+xml,${encodeURIComponent(
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect x="2" y="7" width="12" height="8" rx="1.5" fill="#0b57d0"/><path d="M5 7V5a3 3 0 0 1 6 0v2" fill="none" stroke="#0b57d0" stroke-width="2"/></svg>',
)}`;

/**
 * The page loads only its own script and stylesheet (nothing inline) and calls only its
 * own origin; no other site may frame it, so a force-release button can't be clickjacked.
 */
export const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

export const PAGE = `<!doctype html>
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
  <nav><span id="live" class="live">connecting</span> <a href="docs">API reference</a></nav>
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
        <th scope="col">Value</th>
        <th scope="col" class="num">Token</th>
        <th scope="col" class="num">Expires in</th>
        <th scope="col" class="num">In line</th>
        <th scope="col"><span class="visually-hidden">Actions</span></th>
      </tr>
    </thead>
    <tbody></tbody>
  </table>
  </div>
  <p id="empty" hidden>No locks are held.</p>
  <section id="semaphores-section" aria-labelledby="semaphores-title" hidden>
  <h2 id="semaphores-title">Semaphores</h2>
  <div class="table-wrap">
  <table id="semaphores">
    <caption class="visually-hidden">Semaphores with holders, in name order</caption>
    <thead>
      <tr>
        <th scope="col">Name</th>
        <th scope="col" class="num">Held</th>
        <th scope="col">Holders (token: owner = value)</th>
        <th scope="col" class="num">In line</th>
      </tr>
    </thead>
    <tbody></tbody>
  </table>
  </div>
  </section>
</main>
<script src="dashboard/app.js"></script>
</body>
</html>
`;

export const CSS = `:root { color-scheme: light dark; --fg: #111; --bg: #fff; --muted: #555; --line: #d0d0d0;
  --accent: #0b57d0; --warn: #a30000; --row: #f5f7fa; }
@media (prefers-color-scheme: dark) { :root { --fg: #eee; --bg: #121212; --muted: #bbb; --line: #3a3a3a;
  --accent: #8ab4f8; --warn: #ff8a80; --row: #1d1f22; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: baseline; justify-content: space-between; padding: 1rem 1.5rem;
  border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 1.4rem; } .sub { color: var(--muted); font-weight: 400; }
h2 { margin: 1.5rem 0 .5rem; font-size: 1.15rem; }
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
/* Owners run to 256 characters, values to 4,096 bytes: cut them short (the cell's title has the whole text). */
td.owner > span, td.value > span { display: block; max-width: min(20rem, 30vw); overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
td.value > span { max-width: min(16rem, 20vw); font-family: ui-monospace, monospace; }
.live { margin-right: 1rem; color: var(--muted); font-size: .875rem; }
body[data-stream="live"] .live::before { content: "● "; color: #188038; }
td.ttl { white-space: nowrap; }
td.holders { font-family: ui-monospace, monospace; word-break: break-all; }
button { font: inherit; padding: .25rem .75rem; border: 1px solid var(--warn); color: var(--warn);
  background: transparent; border-radius: 4px; cursor: pointer; }
button:hover { background: var(--warn); color: var(--bg); }
#status { color: var(--muted); } #status.error { color: var(--warn); font-weight: 600; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
`;
