// A Lambda-style handler that builds one day's report at a time, however many
// invocations run at once: withLock holds the lock while the work runs, renews it,
// and releases it when the work settles. Plain JavaScript: "leasehold/client" (or the
// client alone, "leasehold-client") is compiled JavaScript with no dependencies, so the
// function needs no build step. In a clone of this repository, `npm run build` first.
import { LeaseholdError, withLock } from "leasehold/client";

export async function handler(event, context) {
  const day = event.day;
  // Give up a second before the platform would kill the invocation mid-work.
  const budget = new AbortController();
  const timer = setTimeout(() => budget.abort(new Error("out of time")), context.getRemainingTimeInMillis() - 1000);
  try {
    return await withLock(
      `report:${day}`,
      async (lock) => {
        // lock.signal fires if the lock is lost (or the budget runs out): stop then.
        const report = await buildReport(lock.signal);
        // Writes to shared storage carry lock.token, the fencing token (see ../fenced-write).
        return { statusCode: 200, body: JSON.stringify({ day, token: lock.token, ...report }) };
      },
      { ttl: 10, wait: 5, owner: context.awsRequestId, signal: budget.signal },
    );
  } catch (err) {
    if (err instanceof LeaseholdError && err.code === "lock-held") {
      return { statusCode: 409, body: JSON.stringify({ day, error: "another invocation is building this report" }) };
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Stands in for the real work: a little while, abandoned when `signal` fires. */
async function buildReport(signal) {
  const started = Date.now();
  await new Promise((resolve, reject) => {
    const t = setTimeout(resolve, Number(process.env.REPORT_MS ?? 300));
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      reject(signal.reason);
    });
  });
  return { lines: 42, started, finished: Date.now() };
}
