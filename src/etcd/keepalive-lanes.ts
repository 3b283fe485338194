import { EtcdUnavailableError } from "./types.js";

/** One open LeaseKeepAlive stream, whichever transport carries it. */
export interface KeepAliveStream {
  /** Sends one keep-alive request for the lease (ID in decimal). */
  write(id: string): void;
  end(): void;
}

/** What a stream reports: each reply (the lease's ID, its TTL, 0 when it is gone), or that it broke. */
export interface KeepAliveEvents {
  reply(id: string, ttl: number): void;
  broken(err: Error): void;
}

export type OpenKeepAliveStream = (events: KeepAliveEvents) => Promise<KeepAliveStream>;

interface Waiter {
  resolve(ttl: number): void;
  reject(err: unknown): void;
}

/**
 * One long-lived LeaseKeepAlive stream: opening a stream per call costs more CPU (in the
 * service and in etcd) than the keep-alive itself. etcd answers each request with the
 * lease's ID, so replies are matched by ID (in order per lease).
 */
class Lane {
  private stream: Promise<KeepAliveStream> | undefined;
  private open = false;
  private readonly waiters = new Map<string, Waiter[]>();

  constructor(private readonly connect: OpenKeepAliveStream) {}

  private get(): Promise<KeepAliveStream> {
    if (this.stream) return this.stream;
    let live = true;
    const opening: Promise<KeepAliveStream> = this.connect({
      reply: (id, ttl) => {
        const list = this.waiters.get(id);
        const waiter = list?.shift();
        if (list?.length === 0) this.waiters.delete(id);
        waiter?.resolve(ttl);
      },
      broken: (err) => {
        if (!live) return;
        live = false;
        // A stream this lane has already dropped must not fail the waiters of its successor.
        if (this.stream !== opening) return;
        this.stream = undefined;
        for (const list of this.waiters.values()) for (const w of list) w.reject(err);
        this.waiters.clear();
      },
    }).then(
      (stream) => {
        if (this.stream === opening) this.open = true;
        // Dropped while it opened (a caller's deadline passed): once the callers that
        // joined it have written (microtasks on this same promise), close its sending
        // side; etcd answers what was sent and then ends it.
        else setTimeout(() => stream.end(), 0);
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
    let forgotten = false;
    const reply = this.get().then(
      (stream) =>
        new Promise<number>((resolve, reject) => {
          // The caller stopped waiting while the stream opened: its keep-alive is not sent,
          // and no waiter is left behind to take a later caller's reply.
          if (forgotten) return reject(new EtcdUnavailableError("keep-alive abandoned"));
          waiter = { resolve, reject };
          const list = this.waiters.get(id);
          if (list) list.push(waiter);
          else this.waiters.set(id, [waiter]);
          stream.write(id);
        }),
    );
    return {
      reply,
      forget: () => {
        forgotten = true;
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
export function keepAliveLanes(connect: OpenKeepAliveStream, count = 8) {
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

export const streamEnded = () => new EtcdUnavailableError("etcd ended the keep-alive stream");
