"""What the service answers, as plain dataclasses. Secrets (``lease``, ``ticket``) are
left out of ``repr`` so that logging an answer never logs them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional

from .errors import InvalidResponse


@dataclass(frozen=True)
class Grant:
    """A held lock (or semaphore permit): ``token`` is the fencing token, ``lease`` the
    holder's secret handle. ``ttl`` is the TTL granted; ``expires_at`` the server's
    estimate (count from your own send time instead). ``limit`` is set for permits."""

    name: str
    token: int
    lease: str = field(repr=False)
    ttl: int
    expires_at: str
    owner: Optional[str] = None
    value: Optional[str] = None
    limit: Optional[int] = None

    @classmethod
    def from_json(cls, body: Any, kind: str = "lock") -> "Grant":
        if not (
            isinstance(body, dict)
            and _int(body.get("token"))
            and isinstance(body.get("lease"), str)
            and _int(body.get("ttl"))
            and (kind != "semaphore" or _int(body.get("limit")))
        ):
            raise InvalidResponse("the service's answer is not a grant of a %s" % kind)
        return cls(
            name=body.get("name", ""),
            token=body["token"],
            lease=body["lease"],
            ttl=body["ttl"],
            expires_at=body.get("expiresAt", ""),
            owner=body.get("owner"),
            value=body.get("value"),
            limit=body.get("limit"),
        )


@dataclass(frozen=True)
class Ticket:
    """A place in line kept across requests: ``position`` waiters ahead (next = 0), kept
    ``ttl`` s without a redeem. ``ticket`` is a secret like a lease."""

    ticket: str = field(repr=False)
    position: int
    ttl: int

    @classmethod
    def from_json(cls, body: Any) -> "Ticket":
        if not (
            isinstance(body, dict)
            and isinstance(body.get("ticket"), str)
            and _int(body.get("position"))
            and _int(body.get("ttl"))
        ):
            raise InvalidResponse("the service's 202 answer is not a place in line")
        return cls(ticket=body["ticket"], position=body["position"], ttl=body["ttl"])


@dataclass(frozen=True)
class LockInfo:
    """What anyone may see about a held lock (never its lease); ``ttl`` is the remaining seconds."""

    name: str
    token: int
    ttl: int
    expires_at: str
    owner: Optional[str] = None
    value: Optional[str] = None
    waiters: int = 0
    index: Optional[int] = None

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "LockInfo":
        return cls(
            name=body["name"],
            token=body["token"],
            ttl=body["ttl"],
            expires_at=body.get("expiresAt", ""),
            owner=body.get("owner"),
            value=body.get("value"),
            waiters=body.get("waiters", 0),
            index=body.get("index"),
        )


@dataclass(frozen=True)
class PermitHolder:
    """One holder of a semaphore, as anyone may see it (never its lease)."""

    token: int
    ttl: int
    expires_at: str
    owner: Optional[str] = None
    value: Optional[str] = None


@dataclass(frozen=True)
class SemaphoreInfo:
    """A semaphore's holders (oldest first) and how many wait."""

    name: str
    limit: int
    holders: List[PermitHolder]
    waiters: int = 0
    index: Optional[int] = None

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "SemaphoreInfo":
        return cls(
            name=body["name"],
            limit=body["limit"],
            holders=[
                PermitHolder(
                    token=h["token"],
                    ttl=h["ttl"],
                    expires_at=h.get("expiresAt", ""),
                    owner=h.get("owner"),
                    value=h.get("value"),
                )
                for h in body.get("holders", [])
            ],
            waiters=body.get("waiters", 0),
            index=body.get("index"),
        )


@dataclass(frozen=True)
class State:
    """A lock's (or semaphore's) guarded state: a value that outlives the grants, written
    only by a current holder. ``token`` is the fencing token of the grant that wrote it,
    ``revision`` the etcd revision it was written at, ``updated_at`` when (the service's
    clock, ISO 8601)."""

    value: str
    token: int
    revision: int
    updated_at: str

    @classmethod
    def from_json(cls, body: Any, kind: str = "lock") -> "State":
        if not (
            isinstance(body, dict)
            and isinstance(body.get("value"), str)
            and _int(body.get("token"))
            and _int(body.get("revision"))
            and isinstance(body.get("updatedAt"), str)
        ):
            raise InvalidResponse("the service's answer is not the state of a %s" % kind)
        return cls(value=body["value"], token=body["token"], revision=body["revision"], updated_at=body["updatedAt"])


class Page(NamedTuple):
    """One page of a listing; ``cursor`` is set when more remain (pass it to the next call)."""

    items: List[Any]
    cursor: Optional[str]


class Indexed(NamedTuple):
    """A state as of an etcd revision: ``info`` is None when nobody holds it. Pass
    ``index`` to the next blocking read to wait for the next change."""

    info: Any
    index: int


@dataclass(frozen=True)
class Event:
    """One change from the event stream.

    ``type`` is ``held`` (a new holder, or a holder's new value: ``kind``, ``name``,
    ``token``, ``owner``, ``value``, ``ttl``), ``free`` (a grant ended: the ``token`` that
    ended) or ``reset`` (start over: the current holders follow; ``reason`` is ``start``,
    ``compacted`` or ``ahead``). ``id`` resumes after this event (``after=``);
    ``revision`` is the etcd revision of the change.
    """

    type: str
    id: str
    revision: int
    kind: Optional[str] = None
    name: Optional[str] = None
    token: Optional[int] = None
    owner: Optional[str] = None
    value: Optional[str] = None
    ttl: Optional[int] = None
    reason: Optional[str] = None


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
