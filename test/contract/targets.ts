import { startTestService, type TestService } from "../support/service.js";
import { startTestWorker } from "../support/worker.js";

/**
 * The runtimes × transports the one contract suite runs against. Each target brings
 * its own real etcd. Suite files use `describe.each(targets)`.
 */
export interface Target {
  name: string;
  /**
   * Whether the runtime tells the app when a caller hangs up mid-request. Node does.
   * Local workerd (wrangler dev, Miniflare, bare workerd) never fires request.signal
   * for a pending request, so those cases cannot be produced on that target here.
   */
  detectsDisconnect: boolean;
  /**
   * Whether a 413 sent before a chunked upload has finished leaves the server usable.
   * Local workerd (wrangler dev) hangs or restarts the worker then; production Workers
   * cap request bodies in front of the worker anyway.
   */
  survivesEarlyAnswerToUpload: boolean;
  start(env?: Record<string, string>): Promise<TestService>;
}

export const targets: Target[] = [
  {
    name: "node+grpc",
    detectsDisconnect: true,
    survivesEarlyAnswerToUpload: true,
    start: (env) => startTestService({ transport: "grpc", ...(env ? { env } : {}) }),
  },
  {
    name: "node+gateway",
    detectsDisconnect: true,
    survivesEarlyAnswerToUpload: true,
    start: (env) => startTestService({ transport: "http", ...(env ? { env } : {}) }),
  },
  {
    name: "worker+gateway",
    detectsDisconnect: false,
    survivesEarlyAnswerToUpload: false,
    start: (env) => startTestWorker(env),
  },
];
