import type { Duplex } from "node:stream";
import { GRPCUnavailableError } from "etcd3";

interface Waiter {
  resolve(ttl: number): void;
  reject(err: unknown): void;
}

/**
 * One long-lived LeaseKeepAlive stream: opening a bidirectional stream per call costs
 * more CPU than the keep-alive itself. etcd answers each request with the lease's ID, so
 * replies are matched by ID (in order per lease).
 */
class Lane {
  private stream: Promise<Duplex> | undefined;
  private open = false;
  private readonly waiters = new Map<string, Waiter[]>();

  constructor(private readonly connect: () => Promise<Duplex>) {}

  private get(): Promise<Duplex> {
    if (this.stream) return this.stream;
    const opening: Promise<Duplex> = this.connect().then(
      (stream) => {
        stream.on("data", (res: { ID: string; TTL: string }) => {
          const list = this.waiters.get(res.ID);
          const waiter = list?.shift();
          if (list?.length === 0) this.waiters.delete(res.ID);
          waiter?.resolve(Number(res.TTL));
        });
        const broken = (err: Error) => {
          if (this.stream !== opening) return;
          this.stream = undefined;
          for (const list of this.waiters.values()) for (const w of list) w.reject(err);
          this.waiters.clear();
        };
        stream.on("error", broken);
        stream.on("end", () => broken(new GRPCUnavailableError("keepalive stream ended")));
        if (this.stream === opening) this.open = true;
        return stream;
      },
      (err: unknown) => {
        if (this.stream === opening) this.stream = undefined;
        throw err;
      },
    );
    this.stream = opening;
    this.open = false;
    return opening;
  }

  /** Sends one keep-alive; `forget` must run once the caller stops waiting for the reply. */
  send(id: string): { reply: Promise<number>; forget(): void } {
    let waiter: Waiter | undefined;
    const reply = this.get().then(
      (stream) =>
        new Promise<number>((resolve, reject) => {
          waiter = { resolve, reject };
          const list = this.waiters.get(id);
          if (list) list.push(waiter);
          else this.waiters.set(id, [waiter]);
          stream.write({ ID: id });
        }),
    );
    return {
      reply,
      forget: () => {
        // A stream still opening when the caller gave up (etcd unreachable) is dropped, so
        // the next call opens a fresh one instead of waiting on it forever.
        if (!this.open) this.stream = undefined;
        // A timed-out request must not take a later reply for the same lease.
        const list = waiter && this.waiters.get(id);
        if (list && waiter) {
          const i = list.indexOf(waiter);
          if (i >= 0) list.splice(i, 1);
          if (list.length === 0) this.waiters.delete(id);
        }
      },
    };
  }

  close(): void {
    this.stream?.then(
      (s) => s.end(),
      () => {},
    );
    this.stream = undefined;
  }
}

/**
 * Keep-alives spread over a few streams. etcd serves the requests of one stream one
 * after another, and under write load each waits for the applied index to catch up
 * (about one txn's time), so a single stream queues concurrent acquires behind each
 * other; separate streams are served in parallel.
 */
export function keepAliveLanes(connect: () => Promise<Duplex>, count = 8) {
  const lanes = Array.from({ length: count }, () => new Lane(connect));
  let next = 0;
  return {
    send(id: bigint): { reply: Promise<number>; forget(): void } {
      next = (next + 1) % lanes.length;
      return (lanes[next] as Lane).send(id.toString());
    },
    close(): void {
      for (const lane of lanes) lane.close();
    },
  };
}
