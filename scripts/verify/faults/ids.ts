/**
 * The fault scenarios' ids and how long each loads the service (seconds per transport),
 * apart from the scenarios themselves so that scenarios.ts can list them without
 * importing what imports it.
 */
export type FaultScenarioId =
  | "partition-leader"
  | "partition-split"
  | "partition-instance"
  | "pause-leader"
  | "pause-follower"
  | "pause-instance"
  | "skew"
  | "membership";

export const FAULT_SECONDS: Record<"short" | "long", Record<FaultScenarioId, number>> = {
  short: {
    "partition-leader": 8,
    "partition-split": 8,
    "partition-instance": 8,
    "pause-leader": 8,
    "pause-follower": 8,
    "pause-instance": 8,
    skew: 8,
    membership: 8,
  },
  long: {
    "partition-leader": 40,
    "partition-split": 40,
    "partition-instance": 40,
    "pause-leader": 40,
    "pause-follower": 40,
    "pause-instance": 40,
    skew: 40,
    membership: 40,
  },
};
