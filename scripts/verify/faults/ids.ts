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
    "partition-leader": 6,
    "partition-split": 6,
    "partition-instance": 6,
    "pause-leader": 6,
    "pause-follower": 6,
    "pause-instance": 6,
    skew: 6,
    membership: 6,
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
