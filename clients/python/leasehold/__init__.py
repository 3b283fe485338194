"""leasehold: a client for the leasehold lock service, Python's standard library only.

    from leasehold import Client

    client = Client()   # LEASEHOLD_URL, LEASEHOLD_API_KEY
    with client.lock("report:daily", ttl=30) as held:
        for batch in batches:
            held.check()                      # raises LockLost once the lock is gone
            write(batch, fence=held.token)    # pass the fencing token with every write
"""

from .client import DEFAULT_URL, Client, Semaphore
from .errors import (
    BackendUnavailable,
    Cancelled,
    FenceStale,
    Forbidden,
    IdempotencyKeyMismatch,
    InvalidRequest,
    InvalidResponse,
    LeaseholdError,
    LimitMismatch,
    LockExpired,
    LockHeld,
    LockLost,
    LockNotFound,
    NetworkError,
    PayloadTooLarge,
    Redirected,
    RequestTimeout,
    StateNotFound,
    TooManyStreams,
    TooManyWaiters,
    Unauthorized,
    UnsupportedMediaType,
)
from .events import EventStream
from .held import HeldLock, Leadership
from .models import Event, Grant, Indexed, LockInfo, Page, PermitHolder, SemaphoreInfo, State, Ticket

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "BackendUnavailable",
    "Cancelled",
    "Client",
    "Event",
    "EventStream",
    "FenceStale",
    "Forbidden",
    "Grant",
    "HeldLock",
    "IdempotencyKeyMismatch",
    "Indexed",
    "InvalidRequest",
    "InvalidResponse",
    "Leadership",
    "LeaseholdError",
    "LimitMismatch",
    "LockExpired",
    "LockHeld",
    "LockInfo",
    "LockLost",
    "LockNotFound",
    "NetworkError",
    "Page",
    "PayloadTooLarge",
    "PermitHolder",
    "Redirected",
    "RequestTimeout",
    "Semaphore",
    "SemaphoreInfo",
    "State",
    "StateNotFound",
    "Ticket",
    "TooManyStreams",
    "TooManyWaiters",
    "Unauthorized",
    "UnsupportedMediaType",
]
