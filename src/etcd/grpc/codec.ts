/** etcd3's (gRPC) messages and errors to our types. */

import { isBrokenCircuitError } from "cockatiel";
import {
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  type IKeyValue,
  isRecoverableError,
} from "etcd3";
import {
  type AllOrNothing,
  EtcdAuthError,
  EtcdUnavailableError,
  type KeyValue,
  LeaseExistsError,
  LeaseNotFoundError,
} from "../types.js";

export function toKv(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: BigInt(kv.lease || "0"),
  };
}

/** Response of an all-or-nothing txn whose failure branch ranges each key in turn. */
export function allOrNothing(res: {
  header: { revision: string };
  succeeded: boolean;
  responses: { response_range?: { kvs: IKeyValue[] } }[];
}): AllOrNothing {
  const revision = Number(res.header.revision);
  if (res.succeeded) return { applied: true, revision };
  return {
    applied: false,
    revision,
    kvs: res.responses.map((r) => r.response_range?.kvs[0] && toKv(r.response_range.kvs[0])),
  };
}

/** The member could not be reached at all (as opposed to an answer that is an error). */
export function isConnectionFailure(err: Error): boolean {
  return (
    isRecoverableError(err) && /No connection established|Connection dropped|ECONNREFUSED|ECONNRESET/.test(err.message)
  );
}

/** An error of etcd3 as one of ours (EtcdUnavailableError, EtcdAuthError, the lease errors), else as it is. */
export function translate(err: unknown, op: string): Error {
  if (
    err instanceof EtcdUnavailableError ||
    err instanceof LeaseExistsError ||
    err instanceof EtcdAuthError ||
    err instanceof LeaseNotFoundError
  )
    return err;
  if (err instanceof EtcdAuthenticationFailedError || err instanceof EtcdPermissionDeniedError) {
    return new EtcdAuthError(`etcd ${op} refused: ${err.message}`);
  }
  if (err instanceof EtcdLeaseInvalidError) return new LeaseNotFoundError(err.message);
  // Every member's circuit is open: none answered lately.
  if (isBrokenCircuitError(err)) return new EtcdUnavailableError(`etcd ${op} failed: no member is answering`);
  if (err instanceof Error && /lease already exists/.test(err.message)) return new LeaseExistsError(err.message);
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  if (
    code === 14 || // UNAVAILABLE, as raw stream errors carry it
    code === 4 || // DEADLINE_EXCEEDED
    // INTERNAL (e.g. "Received RST_STREAM"), UNKNOWN, CANCELLED: the connection failed
    // under the call, which etcd may or may not have applied. Retryable, outcome unknown.
    code === 13 ||
    code === 2 ||
    code === 1 ||
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    (err instanceof Error && isRecoverableError(err))
  ) {
    return new EtcdUnavailableError(`etcd ${op} failed: ${(err as Error).message}`);
  }
  return err instanceof Error ? err : new Error(String(err));
}
