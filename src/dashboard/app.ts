/**
 * The dashboard page's script (runs in the browser): held locks (with their published
 * values and how many are in line) and held semaphores. Changes arrive live on the
 * service's event stream (GET /events), read with fetch so that it can carry the
 * operator's key and respects its scope; lock events are applied at once. What the
 * events don't carry (lines, semaphores' holders, TTLs after renewals) is re-read from
 * the listings after a change and every few seconds; while the stream is down, the
 * listings are polled every second instead.
 * Bundled by `npm run dashboard` into app.bundle.ts, which the service serves as
 * /dashboard/app.js; a test fails when the bundle is older than this source.
 */
import { SseParser } from "../client/sse.js";
import { formatDuration } from "./format.js";

interface Item {
  name: string;
  token: number;
  ttl: number;
  owner?: string;
  value?: string;
  /** Callers in line; absent when none. */
  waiters?: number;
}

interface Semaphore {
  name: string;
  limit: number;
  holders: { token: number; owner?: string; value?: string }[];
  waiters: number;
}

/** A `held` or `free` event's data (`reset` carries no holder). */
interface Change {
  kind?: "lock" | "semaphore";
  name: string;
  token: number;
  owner?: string;
  value?: string;
  ttl?: number;
}

interface Row {
  tr: HTMLTableRowElement;
  ownerCell: HTMLTableCellElement;
  valueCell: HTMLTableCellElement;
  ttlCell: HTMLTableCellElement;
  waitersCell: HTMLTableCellElement;
  token: number;
  /** When the lease runs out, by this browser's clock (ms). */
  deadline: number;
  /** A re-read was asked for when the countdown ran out (renewals send no event). */
  expiredAsked: boolean;
}

/** Without a byte for this long (the service sends a keep-alive every 15 s by default), the stream counts as dead. */
const STREAM_IDLE_MS = 45_000;
/** How often the listings are re-read while the stream is live (for lines and TTLs after renewals). */
const RECONCILE_MS = 5_000;

function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

const prefixInput = element<HTMLInputElement>("prefix");
const keyInput = element<HTMLInputElement>("apikey");
const statusEl = element<HTMLParagraphElement>("status");
const liveEl = element<HTMLSpanElement>("live");
const emptyEl = element<HTMLParagraphElement>("empty");
const body = document.querySelector("#locks tbody") as HTMLTableSectionElement;
const semaphoresSection = element<HTMLElement>("semaphores-section");
const semaphoresBody = document.querySelector("#semaphores tbody") as HTMLTableSectionElement;
const rows = new Map<string, Row>();
let semaphoreCount = 0;
keyInput.value = sessionStorage.getItem("leasehold-key") || "";
prefixInput.value = new URLSearchParams(location.search).get("prefix") || "";

function headers(): Record<string, string> {
  const key = keyInput.value.trim();
  return key ? { authorization: `Bearer ${key}` } : {};
}

function say(text: string, isError = false): void {
  if (statusEl.textContent !== text) statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

async function fetchAll<T>(collection: "locks" | "semaphores"): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 10; page++) {
    const q = new URLSearchParams({ limit: "1000" });
    if (prefixInput.value) q.set("prefix", prefixInput.value);
    if (cursor) q.set("cursor", cursor);
    const res = await fetch(`${collection}?${q}`, { headers: headers(), cache: "no-store" });
    const data = (await res.json().catch(() => ({}))) as { items?: T[]; cursor?: string; detail?: string };
    if (!res.ok) throw new Error(data.detail || `HTTP ${res.status}`);
    items.push(...(data.items ?? []));
    cursor = data.cursor;
    if (!cursor) break;
  }
  return items;
}

/** A cell whose text is cut short by the stylesheet, with the whole text on hover. */
function setClipped(td: HTMLTableCellElement, text: string | undefined): void {
  const shown = text ?? "—";
  const span = td.firstElementChild as HTMLSpanElement | null;
  if (span && span.textContent === shown) return;
  const next = document.createElement("span");
  next.textContent = shown;
  td.replaceChildren(next);
  if (text) td.title = text;
  else td.removeAttribute("title");
}

function newRow(item: Item): Row {
  const tr = document.createElement("tr");
  tr.dataset.name = item.name;
  const cell = (cls: string, text: string) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.append(td);
    return td;
  };
  cell("name", item.name);
  const ownerCell = cell("owner", "");
  const valueCell = cell("value", "");
  cell("num token", String(item.token));
  const ttlCell = cell("num ttl", "");
  const waitersCell = cell("num waiters", "");
  const actions = cell("", "");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Force release";
  button.setAttribute("aria-label", `Force release ${item.name}`);
  button.addEventListener("click", () => void forceRelease(item.name, item.token));
  actions.append(button);
  return { tr, ownerCell, valueCell, ttlCell, waitersCell, token: item.token, deadline: 0, expiredAsked: false };
}

/** Shows `item` (a new row when its grant is new), its countdown running from `receivedAt`. */
function show(item: Item, receivedAt: number): Row {
  let row = rows.get(item.name);
  if (!row || row.token !== item.token) {
    const fresh = newRow(item);
    if (row) row.tr.replaceWith(fresh.tr);
    else placeInOrder(fresh.tr, item.name);
    row = fresh;
    rows.set(item.name, row);
  }
  setClipped(row.ownerCell, item.owner);
  setClipped(row.valueCell, item.value);
  row.deadline = receivedAt + item.ttl * 1000;
  row.expiredAsked = false;
  // At once, not at the next tick: a new row never shows an empty TTL.
  showTtl(row, Date.now());
  return row;
}

/** Inserts a new row where the API's name order puts it. */
function placeInOrder(tr: HTMLTableRowElement, name: string): void {
  for (const other of body.rows) {
    if ((other.dataset.name ?? "") > name) {
      body.insertBefore(tr, other);
      return;
    }
  }
  body.append(tr);
}

function drop(name: string): void {
  const row = rows.get(name);
  if (!row) return;
  row.tr.remove();
  rows.delete(name);
}

/**
 * `kept`: rows to keep although the listing lacks them, because a `held` event read after
 * the listing is about to be applied again (dropping them would redraw them, and take
 * keyboard focus from their buttons).
 */
function render(items: Item[], receivedAt: number, kept: Set<string>): void {
  const seen = new Set<string>(kept);
  for (const item of items) {
    seen.add(item.name);
    const row = show(item, receivedAt);
    const waiters = String(item.waiters ?? 0);
    if (row.waitersCell.textContent !== waiters) row.waitersCell.textContent = waiters;
  }
  for (const name of [...rows.keys()]) if (!seen.has(name)) drop(name);
  // Keep name order (the API's order), moving only a row that is out of place: moving a
  // row takes it out of the document for a moment, and the browser then takes keyboard
  // focus away from its button (a keyboard user's Enter would land nowhere).
  const listed = new Set(items.map((item) => item.name));
  let next = body.firstElementChild as HTMLTableRowElement | null;
  for (const item of items) {
    const row = rows.get(item.name);
    if (!row) continue;
    // A kept row stays where it was put.
    while (next && !listed.has(next.dataset.name ?? "")) next = next.nextElementSibling as HTMLTableRowElement | null;
    if (row.tr === next) next = next.nextElementSibling as HTMLTableRowElement | null;
    else body.insertBefore(row.tr, next);
  }
  tick();
}

/** Semaphores change little and have no countdown: their rows are rebuilt on each load. */
function renderSemaphores(items: Semaphore[]): void {
  semaphoresBody.replaceChildren(
    ...items.map((item) => {
      const tr = document.createElement("tr");
      tr.dataset.name = item.name;
      const holders = item.holders
        .map((h) => `${h.token}: ${h.owner ?? "—"}${h.value === undefined ? "" : ` = ${h.value}`}`)
        .join(", ");
      const cells: [cls: string, text: string][] = [
        ["name", item.name],
        ["num held", `${item.holders.length} / ${item.limit}`],
        ["holders", holders],
        ["num waiters", String(item.waiters)],
      ];
      for (const [cls, text] of cells) {
        const td = document.createElement("td");
        td.className = cls;
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }),
  );
  semaphoreCount = items.length;
  semaphoresSection.hidden = items.length === 0;
}

function counted(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"} held`;
}

function showCounts(): void {
  emptyEl.hidden = rows.size > 0;
  const held = counted(rows.size, "lock");
  say(semaphoreCount > 0 ? `${held} · ${counted(semaphoreCount, "semaphore")}` : held);
}

function showTtl(row: Row, now: number): void {
  const text = formatDuration(Math.ceil((row.deadline - now) / 1000));
  if (row.ttlCell.textContent !== text) row.ttlCell.textContent = text;
}

function tick(): void {
  const now = Date.now();
  for (const row of rows.values()) {
    showTtl(row, now);
    // Run out without a `free` event: renewed since (or the event is on its way). Re-read.
    if (now > row.deadline + 1000 && !row.expiredAsked) {
      row.expiredAsked = true;
      void refresh();
    }
  }
}

async function forceRelease(name: string, token: number): Promise<void> {
  if (!confirm(`Force-release ${name}? Its holder will lose it.`)) return;
  // Only the grant shown (by its token): a newer holder of the name is not ended by mistake.
  const res = await fetch(`locks/${encodeURIComponent(name)}?force=true&token=${token}`, {
    method: "DELETE",
    headers: headers(),
  });
  if (res.status === 204) say(`Released ${name}`);
  else {
    const data = (await res.json().catch(() => ({}))) as { detail?: string };
    say(`Could not release ${name}: ${data.detail || `HTTP ${res.status}`}`, true);
  }
  void refresh();
}

// Rows that can't be confirmed are not shown: after a failed load (a bad prefix, a
// revoked key, the service down) the table is emptied, not left counting down.
function clear(): void {
  for (const row of rows.values()) row.tr.remove();
  rows.clear();
  emptyEl.hidden = true;
  semaphoresBody.replaceChildren();
  semaphoresSection.hidden = true;
  semaphoreCount = 0;
}

const inputs = () => JSON.stringify([prefixInput.value, keyInput.value]);
/** The inputs of the load in flight. */
let loading: string | null = null;
let again = false;
let lastLoad = 0;
let loadsEnded = 0;
/**
 * Lock events that arrived while a load was in flight: the listing may have been read
 * before them, so they are applied again on top of it.
 */
let replay: [type: string, change: Change][] | null = null;

async function refresh(): Promise<void> {
  if (loading !== null) {
    // Asked again mid-load (a change, or new inputs): load once more when this one ends.
    again = true;
    return;
  }
  const asked = inputs();
  loading = asked;
  lastLoad = Date.now();
  replay = [];
  const sentAt = Date.now();
  try {
    const [items, semaphores] = await Promise.all([fetchAll<Item>("locks"), fetchAll<Semaphore>("semaphores")]);
    if (asked === inputs()) {
      const kept = new Set(replay.filter(([type]) => type === "held").map(([, c]) => c.name));
      render(items, sentAt, kept);
      renderSemaphores(semaphores);
      for (const [type, change] of replay) apply(type, change);
      showCounts();
    }
  } catch (err) {
    if (asked === inputs()) {
      clear();
      say(`Cannot load locks: ${(err as Error).message}`, true);
    }
  } finally {
    loading = null;
    replay = null;
    // How many loads have ended: lets a test wait for one instead of sleeping.
    document.body.dataset.loads = String(++loadsEnded);
    if (again) {
      again = false;
      void refresh();
    }
  }
}

/** Applies a lock's `held` or `free` to its row at once; returns whether it was a lock's. */
function apply(type: string, change: Change): boolean {
  if ((change.kind ?? "lock") !== "lock") return false;
  if (type === "held") show({ ...change, ttl: change.ttl ?? 0 }, Date.now());
  else if (rows.get(change.name)?.token === change.token) drop(change.name);
  return true;
}

// --- the event stream ---

let live = false;
let stream: AbortController | null = null;
/** The id to resume after, for the inputs the stream was opened with. */
let lastEventId = "";
let streamFailures = 0;
let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
/** Between a `reset` and the end of its revision: the holders that follow are re-read instead. */
let inSnapshot = false;

function setLive(on: boolean, why = ""): void {
  live = on;
  document.body.dataset.stream = on ? "live" : "polling";
  liveEl.textContent = on ? "live" : "polling";
  liveEl.title = on ? "changes appear as they happen" : `live updates unavailable${why ? `: ${why}` : ""}`;
}

function onEvent(type: string, data: string, hasId: boolean): void {
  let change: Change | undefined;
  try {
    change = JSON.parse(data) as Change;
  } catch {
    change = undefined;
  }
  if (type === "reset") {
    inSnapshot = true;
    void refresh();
  } else if (change && (type === "held" || type === "free") && !inSnapshot) {
    if (apply(type, change)) {
      replay?.push([type, change]);
      showCounts();
      tick();
    }
    // Lines and semaphores are not in the events: re-read them.
    void refresh();
  }
  if (hasId) inSnapshot = false;
}

async function connect(): Promise<void> {
  clearTimeout(reconnectTimer);
  stream?.abort();
  const controller = new AbortController();
  stream = controller;
  let idle: ReturnType<typeof setTimeout> | undefined;
  const watchdog = () => {
    clearTimeout(idle);
    idle = setTimeout(() => controller.abort(), STREAM_IDLE_MS);
  };
  let why = "";
  try {
    const q = new URLSearchParams();
    if (prefixInput.value) q.set("prefix", prefixInput.value);
    watchdog();
    const res = await fetch(`events?${q}`, {
      headers: { ...headers(), accept: "text/event-stream", ...(lastEventId ? { "last-event-id": lastEventId } : {}) },
      cache: "no-store",
      signal: controller.signal,
    });
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    const parser = new SseParser(lastEventId, { event: (e) => onEvent(e.event, e.data, e.hasId) });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    setLive(true);
    streamFailures = 0;
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      watchdog();
      parser.push(decoder.decode(chunk.value, { stream: true }));
      lastEventId = parser.lastEventId;
    }
    why = "the stream ended";
  } catch (err) {
    why = (err as Error).message;
  } finally {
    clearTimeout(idle);
  }
  if (stream !== controller) return; // replaced (new inputs): that one carries on
  inSnapshot = false;
  setLive(false, why);
  // Back off while it keeps failing; the poll covers the gap.
  const delay = Math.min(30_000, 250 * 2 ** streamFailures++);
  reconnectTimer = setTimeout(() => void connect(), delay);
}

/** New filter or key: a new stream (its reset brings the state) and a load. */
function restart(): void {
  lastEventId = "";
  streamFailures = 0;
  void connect();
  void refresh();
}

keyInput.addEventListener("change", () => {
  sessionStorage.setItem("leasehold-key", keyInput.value.trim());
  restart();
});
prefixInput.addEventListener("input", () => {
  const url = new URL(location.href);
  if (prefixInput.value) url.searchParams.set("prefix", prefixInput.value);
  else url.searchParams.delete("prefix");
  history.replaceState(null, "", url);
  restart();
});
element("controls").addEventListener("submit", (e) => e.preventDefault());
// Without the stream, poll every second; with it, re-read now and then for what events don't carry.
setInterval(() => {
  if (!live || Date.now() - lastLoad >= RECONCILE_MS) void refresh();
}, 1000);
setInterval(tick, 250);
setLive(false, "connecting");
restart();
