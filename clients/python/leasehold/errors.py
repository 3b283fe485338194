"""The client's exceptions: one class per problem ``code`` the service sends, plus the
client's own (no answer, a timeout, an answer that is not what the API promises, a lock
that ran past this client's deadline)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type

#: Statuses that ask the caller to come back later; worth retrying.
TRANSIENT_STATUSES = (429, 502, 503, 504)


class LeaseholdError(Exception):
    """Why a call failed.

    ``code`` is the problem's stable code (``lock-held``, ``lock-lost``, …) or one of the
    client's own: ``network-error`` (no answer), ``timeout`` (no answer in time),
    ``invalid-response`` (an answer that is not what the API promises), ``lock-expired``
    (no successful renew before this client's own deadline), ``cancelled`` (the call was
    abandoned from another thread). ``status`` is the HTTP status, 0 when no answer was
    received; ``problem`` the problem body; ``retry_after`` the seconds of ``Retry-After``.
    """

    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        status: int = 0,
        problem: Optional[Dict[str, Any]] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.status = status
        self.problem = problem
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth retrying: no answer, a timeout, or the service asking to come back later."""
        return self.code in ("network-error", "timeout") or self.status in TRANSIENT_STATUSES


class InvalidRequest(LeaseholdError):
    """400: a bad name, body or query; ``problem["errors"]`` names the fields."""

    code = "invalid-request"


class Unauthorized(LeaseholdError):
    """401: auth is on and the API key is missing or unknown."""

    code = "unauthorized"


class Forbidden(LeaseholdError):
    """403: the API key may not use this name (or is not an admin key for a force release)."""

    code = "forbidden"


class LockNotFound(LeaseholdError):
    """404: nobody holds it (a force release of a free lock)."""

    code = "lock-not-found"


class StateNotFound(LeaseholdError):
    """404: no holder has written a guarded state (``read_state`` answers None instead)."""

    code = "state-not-found"


class LockHeld(LeaseholdError):
    """409: someone else holds it (after any ``wait``).

    ``holder`` (a lock's: ``owner``, ``token``, ``expiresAt``), ``position`` (the waiters
    that were still ahead) and ``reason`` come from the problem when it has them.
    ``reason`` is ``"lock-delay"`` (and ``holder`` None) while nobody holds the lock but its
    last grant, which ended without a release, keeps it back for its ``lock_delay``
    (``retry_after`` says how long).
    """

    code = "lock-held"

    @property
    def holder(self) -> Optional[Dict[str, Any]]:
        return (self.problem or {}).get("holder")

    @property
    def position(self) -> Optional[int]:
        return (self.problem or {}).get("position")

    @property
    def reason(self) -> Optional[str]:
        return (self.problem or {}).get("reason")


class LimitMismatch(LeaseholdError):
    """409: a semaphore's holders took it with another ``limit`` (``limit`` is theirs)."""

    code = "limit-mismatch"

    @property
    def limit(self) -> Optional[int]:
        return (self.problem or {}).get("limit")


class FenceStale(LeaseholdError):
    """409: a fencing token that is not the current holder's (``fence`` answers False instead)."""

    code = "fence-stale"


class LockLost(LeaseholdError):
    """410: the lock (or ticket) is no longer yours: expired, released, forced or someone else's."""

    code = "lock-lost"


class LockExpired(LockLost):
    """No renew succeeded before this client's own deadline: the lock may have expired."""

    code = "lock-expired"


class PayloadTooLarge(LeaseholdError):
    code = "payload-too-large"


class UnsupportedMediaType(LeaseholdError):
    code = "unsupported-media-type"


class IdempotencyKeyMismatch(LeaseholdError):
    """422: an Idempotency-Key reused with other request fields; nothing changed."""

    code = "idempotency-key-mismatch"


class TooManyWaiters(LeaseholdError):
    """429: the instance's cap on concurrent waiters is reached (``retry_after`` says when to come back)."""

    code = "too-many-waiters"


class TooManyStreams(LeaseholdError):
    """429: the instance serves as many event streams as it may."""

    code = "too-many-streams"


class BackendUnavailable(LeaseholdError):
    """503: etcd did not answer in time, or the instance is shutting down."""

    code = "backend-unavailable"


class NetworkError(LeaseholdError):
    """No answer: the connection was refused, reset or closed early."""

    code = "network-error"


class RequestTimeout(LeaseholdError):
    """No answer within the request's deadline."""

    code = "timeout"


class InvalidResponse(LeaseholdError):
    """An answer that is not what the API promises (not a grant, no JSON, …)."""

    code = "invalid-response"


class Redirected(LeaseholdError):
    """The URL answered with a redirect, which the client does not follow (it would send
    the request's lease or ticket on): point the client at the service itself."""

    code = "redirected"


class Cancelled(LeaseholdError):
    """The call was abandoned (a lock's renew when the block ends, an event stream closed)."""

    code = "cancelled"


_BY_CODE: Dict[str, Type[LeaseholdError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        Unauthorized,
        Forbidden,
        LockNotFound,
        StateNotFound,
        LockHeld,
        LimitMismatch,
        FenceStale,
        LockLost,
        LockExpired,
        PayloadTooLarge,
        UnsupportedMediaType,
        IdempotencyKeyMismatch,
        TooManyWaiters,
        TooManyStreams,
        BackendUnavailable,
    )
}


def problem_error(
    method: str, path: str, status: int, reason: str, headers: Mapping[str, str], body: Any
) -> LeaseholdError:
    """The exception for a non-2xx answer: its problem's class when the body is one, else its status."""
    if 300 <= status < 400:
        return Redirected(
            "%s %s: the URL answered with a redirect (%d), which the client does not follow "
            "(it would send the request's lease or ticket on); point the client at the service itself"
            % (method, path, status),
            status=status,
        )
    problem = body if isinstance(body, dict) and isinstance(body.get("code"), str) else None
    code = problem["code"] if problem else ("backend-unavailable" if status == 503 else "http-%d" % status)
    detail = (problem or {}).get("detail") or reason or "no problem details"
    retry_after: Optional[float] = None
    try:
        value = headers.get("retry-after")
        if value is not None and float(value) >= 0:
            retry_after = float(value)
    except ValueError:
        pass
    cls = _BY_CODE.get(code, LeaseholdError)
    return cls(
        "%s %s: %d %s: %s" % (method, path, status, code, detail),
        code=code,
        status=status,
        problem=problem,
        retry_after=retry_after,
    )
