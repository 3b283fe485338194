import { startTestService, type TestService } from "../support/service.js";

/**
 * The runtimes × transports the one contract suite runs against. Each target brings
 * its own real etcd. Files use `describe.each(targets)`.
 */
export interface Target {
  name: string;
  start(env?: Record<string, string>): Promise<TestService>;
}

export const targets: Target[] = [
  { name: "node+grpc", start: (env) => startTestService({ transport: "grpc", ...(env ? { env } : {}) }) },
  { name: "node+gateway", start: (env) => startTestService({ transport: "http", ...(env ? { env } : {}) }) },
];
