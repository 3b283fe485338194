/**
 * The dashboard page's script (runs in the browser): held locks (with how many are in
 * line) and held semaphores. It polls the public API with the
 * key the operator types in, so it works on every runtime and respects the key's scope.
 * Bundled by `npm run dashboard` into app.bundle.ts, which the service serves as
 * /dashboard/app.js; a test fails when the bundle is older than this source.
 */
import { formatDuration } from "./format.js";

interface Item {
  name: string;
  token: number;
  ttl: number;
  owner?: string;
  /** Callers in line; absent when none. */
  waiters?: number;
}

interface Semaphore {
  name: string;
  limit: number;
  holders: { token: number; owner?: string }[];
  waiters: number;
}

interface Row {
  tr: HTMLTableRowElement;
  ttlCell: HTMLTableCellElement;
  waitersCell: HTMLTableCellElement;
  token: number;
  /** When the lease runs out, by this browser's clock (ms). */
  deadline: number;
}

function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

const prefixInput = element<HTMLInputElement>("prefix");
const keyInput = element<HTMLInputElement>("apikey");
const statusEl = element<HTMLParagraphElement>("status");
const emptyEl = element<HTMLParagraphElement>("empty");
const body = document.querySelector("#locks tbody") as HTMLTableSectionElement;
const semaphoresSection = element<HTMLElement>("semaphores-section");
const semaphoresBody = document.querySelector("#semaphores tbody") as HTMLTableSectionElement;
const rows = new Map<string, Row>();
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
  const owner = cell("owner", "");
  const ownerText = document.createElement("span");
  ownerText.textContent = item.owner ?? "—";
  owner.append(ownerText);
  if (item.owner) owner.title = item.owner;
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
  return { tr, ttlCell, waitersCell, token: item.token, deadline: 0 };
}

function render(items: Item[], receivedAt: number): void {
  const seen = new Set<string>();
  for (const item of items) {
    seen.add(item.name);
    let row = rows.get(item.name);
    if (!row || row.token !== item.token) {
      row?.tr.remove();
      row = newRow(item);
      rows.set(item.name, row);
    }
    row.deadline = receivedAt + item.ttl * 1000;
    const waiters = String(item.waiters ?? 0);
    if (row.waitersCell.textContent !== waiters) row.waitersCell.textContent = waiters;
  }
  for (const [name, row] of rows) {
    if (!seen.has(name)) {
      row.tr.remove();
      rows.delete(name);
    }
  }
  // Keep name order (the API's order) without rebuilding rows.
  for (const item of items) {
    const row = rows.get(item.name);
    if (row) body.append(row.tr);
  }
  emptyEl.hidden = items.length > 0;
  tick();
}

/** Semaphores change little and have no countdown: their rows are rebuilt on each load. */
function renderSemaphores(items: Semaphore[]): void {
  semaphoresBody.replaceChildren(
    ...items.map((item) => {
      const tr = document.createElement("tr");
      tr.dataset.name = item.name;
      const holders = item.holders.map((h) => `${h.token}: ${h.owner ?? "—"}`).join(", ");
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
  semaphoresSection.hidden = items.length === 0;
}

function counted(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"} held`;
}

function tick(): void {
  const now = Date.now();
  for (const row of rows.values()) {
    const text = formatDuration(Math.ceil((row.deadline - now) / 1000));
    if (row.ttlCell.textContent !== text) row.ttlCell.textContent = text;
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
}

const inputs = () => JSON.stringify([prefixInput.value, keyInput.value]);
/** The inputs of the load in flight. */
let loading: string | null = null;
let again = false;

async function refresh(): Promise<void> {
  if (loading !== null) {
    // The filter or key changed mid-load: load again for them once this one ends.
    if (inputs() !== loading) again = true;
    return;
  }
  const asked = inputs();
  loading = asked;
  const sentAt = Date.now();
  try {
    const [items, semaphores] = await Promise.all([fetchAll<Item>("locks"), fetchAll<Semaphore>("semaphores")]);
    if (asked === inputs()) {
      render(items, sentAt);
      renderSemaphores(semaphores);
      const held = counted(items.length, "lock");
      say(semaphores.length > 0 ? `${held} · ${counted(semaphores.length, "semaphore")}` : held);
    }
  } catch (err) {
    if (asked === inputs()) {
      clear();
      say(`Cannot load locks: ${(err as Error).message}`, true);
    }
  } finally {
    loading = null;
    if (again) {
      again = false;
      void refresh();
    }
  }
}

keyInput.addEventListener("change", () => {
  sessionStorage.setItem("leasehold-key", keyInput.value.trim());
  void refresh();
});
prefixInput.addEventListener("input", () => {
  const url = new URL(location.href);
  if (prefixInput.value) url.searchParams.set("prefix", prefixInput.value);
  else url.searchParams.delete("prefix");
  history.replaceState(null, "", url);
  void refresh();
});
element("controls").addEventListener("submit", (e) => e.preventDefault());
setInterval(() => void refresh(), 1000);
setInterval(tick, 250);
void refresh();
