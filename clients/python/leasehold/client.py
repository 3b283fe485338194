"""The client: every call of the HTTP API, for locks and semaphores alike."""

from __future__ import annotations

import os
import threading
import urllib.parse
from typing import Any, Callable, Optional

from ._lines import Line, Lines, defined, granted
from ._http import Transport
from .errors import LeaseholdError, LockLost
from .events import EventStream
from .held import HeldLock, Leadership
from .models import Grant, Indexed, LockInfo, Page, SemaphoreInfo, State

DEFAULT_URL = "http://127.0.0.1:8080"


class Client:
    """A client of the leasehold service at ``url`` (default ``LEASEHOLD_URL``, else
    http://127.0.0.1:8080), sending ``api_key`` (default ``LEASEHOLD_API_KEY``) as a
    bearer token. ``timeout`` is each request's deadline in seconds, on top of any wait.

    Safe to share between threads: every call uses a connection of its own.
    """

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, timeout: float = 15.0) -> None:
        url = url or os.environ.get("LEASEHOLD_URL") or DEFAULT_URL
        if api_key is None:
            api_key = os.environ.get("LEASEHOLD_API_KEY") or None
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._lines = Lines(Transport(self.url, api_key), timeout)

    def __repr__(self) -> str:
        return "Client(%r)" % self.url

    # -- locks --------------------------------------------------------------------------

    def acquire(
        self,
        name: str,
        *,
        ttl: Optional[int] = None,
        wait: Optional[float] = None,
        owner: Optional[str] = None,
        value: Optional[str] = None,
        lock_delay: Optional[int] = None,
        queue: bool = False,
        ticket_ttl: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        retry_for: float = 10.0,
    ) -> Any:
        """Takes the lock, waiting up to ``wait`` s (fractions allowed) while it is held.

        Returns a ``Grant``: ``token`` is the fencing token, ``lease`` the secret handle for
        renew and release. Raises ``LockHeld`` (with ``holder``) when it is not granted.
        Transient failures (no answer, 429, 502, 503, 504) are retried for ``retry_for``
        s after the wait, every attempt with the same Idempotency-Key (``idempotency_key``,
        default a random UUID), so a retry after a lost answer gets the same grant.

        With ``queue=True`` a lock not granted at once is not a ``LockHeld``: the answer is
        a ``Ticket`` (a place in line kept ``ticket_ttl`` s between visits); come back with
        ``redeem``, or give the place up with ``leave``. ``value`` is published with the
        grant (inspect and the event stream show it).

        ``lock_delay`` (whole seconds, 0–60): when this grant ends without a release (its
        lease expires, or an admin forces it), nobody is granted the lock for that long:
        acquires raise ``LockHeld`` with ``reason == "lock-delay"`` (no holder), a waiting
        acquire waits it out. A release frees the lock at once. For resources that can't
        check a fencing token: a paused holder has that long to notice.
        """
        taken = self._lines.take(
            Line("lock", name),
            ttl=ttl,
            wait=wait,
            owner=owner,
            value=value,
            lock_delay=lock_delay,
            queue=queue,
            ticket_ttl=ticket_ttl,
            idempotency_key=idempotency_key,
            retry_for=retry_for,
        )
        return granted(taken, queue)

    def redeem(self, name: str, ticket: str, *, wait: Optional[float] = None, retry_for: float = 10.0) -> Any:
        """Comes back with a ticket, waiting up to ``wait`` s for its turn: the ``Grant``
        when the ticket reached the head of the line (the same grant again when it already
        had), else a ``Ticket`` with the new position. ``LockLost`` when the ticket is no
        longer in line (not redeemed within its TTL)."""
        return granted(self._lines.redeem(Line("lock", name), ticket, wait=wait, retry_for=retry_for), True)

    def leave(self, name: str, ticket: str) -> None:
        """Gives up a place in line."""
        self._lines.leave(Line("lock", name), ticket)

    def renew(self, name: str, lease: str, *, value: Optional[str] = None) -> Grant:
        """Resets the lease to its granted TTL (and replaces the published value when
        ``value`` is given). Same token. ``LockLost`` when it is no longer yours."""
        return self._lines.renew(Line("lock", name), lease, value=value)

    def release(self, name: str, lease: str) -> None:
        """Releases the lock. ``LockLost`` when it is no longer yours."""
        self._lines.release(Line("lock", name), lease)

    def force_release(self, name: str) -> None:
        """Ends whoever holds the lock (an admin API key only). ``LockNotFound`` when nobody does."""
        self._lines.force_release(Line("lock", name))

    def inspect(self, name: str) -> Optional[LockInfo]:
        """Who holds the lock (owner, token, remaining TTL, published value, waiters), or
        None when nobody does. Never the lease."""
        return self._lines.inspect_at(Line("lock", name)).info

    status = inspect

    def inspect_at(self, name: str, *, index: Optional[int] = None, wait: Optional[float] = None) -> Indexed:
        """The lock's state (``info``, None when free) and the ``index`` it was read at.

        With ``index``, a blocking read: answers once the lock changed after that index, or
        after ``wait`` s unchanged. A loop of ``inspect_at(name, index=last.index, wait=30)``
        sees every change of one lock without polling.
        """
        return self._lines.inspect_at(Line("lock", name), index, wait)

    def list(self, *, prefix: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None) -> Page:
        """One page of held locks in name order (``LockInfo`` items; never leases)."""
        return self._lines.list("lock", prefix, limit, cursor)

    def fence(self, name: str, token: int) -> bool:
        """Whether ``token`` is the fencing token of the lock's current holder, read
        linearizably: True, or False (the service's 409 ``fence-stale``: that grant ended,
        or the token never was this lock's). For a resource that can't compare tokens
        itself: ask just before each write, and write only on True. Not being able to ask
        (no answer, 400, 401, 403) raises."""
        return self._lines.fence(Line("lock", name), token)

    def write_state(self, name: str, lease: str, value: str) -> State:
        """Writes the lock's guarded state (at most 65,536 UTF-8 bytes; more raises
        ``PayloadTooLarge``) in the same etcd transaction that checks the grant of ``lease``
        is the current one: ``LockLost``, and nothing written, when it is not. The state
        outlives the grant: the next holder reads it, and a stale holder can never
        overwrite it."""
        return self._lines.write_state(Line("lock", name), lease, value)

    def read_state(self, name: str) -> Optional[State]:
        """The lock's guarded state (``value``, and the ``token`` of the grant that wrote
        it), or None when no holder has written one."""
        return self._lines.read_state(Line("lock", name))

    def lock(
        self,
        name: str,
        *,
        ttl: Optional[int] = None,
        wait: Optional[float] = None,
        owner: Optional[str] = None,
        value: Optional[str] = None,
        lock_delay: Optional[int] = None,
        margin: Optional[float] = None,
        release: bool = True,
        queue: bool = False,
        ticket_ttl: Optional[int] = None,
        poll_wait: float = 20.0,
        on_queued: Optional[Callable[[int], None]] = None,
        on_lost: Optional[Callable[[LockLost], None]] = None,
        idempotency_key: Optional[str] = None,
        retry_for: float = 10.0,
        stop: Optional[threading.Event] = None,
    ) -> HeldLock:
        """The lock as a context manager::

            with client.lock("report:daily", ttl=30, wait=10) as held:
                for batch in batches:
                    held.check()                     # raises LockLost once the lock is gone
                    write(batch, fence=held.token)   # pass the fencing token with every write

        Entering acquires (as ``acquire``, retrying transient failures with one
        Idempotency-Key; ``LockHeld`` when it can't be had). While the block runs the lock
        is renewed every ttl/3 on a background thread. It counts as lost when a renew is
        answered 410 (or another refusal that can't heal), or when no renew succeeded
        before this client's own deadline: the send time of the last successful acquire or
        renew + ttl − ``margin`` (default ttl/10, at most 2 s). Then ``held.lost`` is set,
        ``held.check()`` raises (``LockLost``, or its subclass ``LockExpired`` for the
        deadline) and ``on_lost`` is called from the renewal thread. Leaving the block
        releases the lock (unless ``release=False``: it then expires one ttl after the last
        renew). A lost lock does not raise by itself: have the body check it.

        With ``queue=True`` it waits in line, served in arrival order, for as long as it
        takes (or up to ``wait`` s): it joins with a ticket and redeems it with long polls of
        ``poll_wait`` s, calling ``on_queued(position)``, and leaves the line if it gives up.
        ``stop`` (an Event) ends a wait in line or a retry between two requests.
        ``lock_delay`` is as for ``acquire``. Inside, ``held.fence()``,
        ``held.write_state(value)`` and ``held.read_state()`` use the held grant.
        """
        return HeldLock(
            self._lines,
            Line("lock", name),
            dict(
                ttl=ttl,
                wait=wait,
                owner=owner,
                value=value,
                lock_delay=lock_delay,
                queue=queue,
                ticket_ttl=ticket_ttl,
                poll_wait=poll_wait,
                on_queued=on_queued,
                idempotency_key=idempotency_key,
                retry_for=retry_for,
                stop=stop,
            ),
            margin=margin,
            release=release,
            on_lost=on_lost,
        )

    def campaign(
        self,
        name: str,
        value: str,
        *,
        ttl: Optional[int] = None,
        wait: float = 30.0,
        owner: Optional[str] = None,
        lock_delay: Optional[int] = None,
        margin: Optional[float] = None,
        on_lost: Optional[Callable[[LockLost], None]] = None,
        retry_for: float = 10.0,
        stop: Optional[threading.Event] = None,
    ) -> Leadership:
        """Leader election as a context manager::

            with client.campaign("scheduler", "10.0.0.7:8080", ttl=15) as leader:
                run_scheduler(epoch=leader.token, lost=leader.lost)

        Entering campaigns (acquires with ``wait``, again and again, until elected; ``stop``
        ends it with ``Cancelled``) publishing ``value``; refusals that can't heal (401, 403,
        400) raise. While the block runs it holds the leadership as ``lock`` does;
        ``leader.proclaim(v)`` publishes a new value. Leaving the block resigns.
        """
        return Leadership(
            self._lines,
            Line("lock", name),
            dict(ttl=ttl, wait=wait, owner=owner, value=value, lock_delay=lock_delay, retry_for=retry_for, stop=stop),
            margin=margin,
            release=True,
            on_lost=on_lost,
        )

    # -- semaphores ---------------------------------------------------------------------

    def semaphore(self, name: str, limit: Optional[int] = None) -> Semaphore:
        """The semaphore ``name``: at most ``limit`` holders at once (every caller must use
        the same limit). Acquiring needs the limit; renew, release, leave and inspect don't."""
        return Semaphore(self._lines, name, limit)

    def list_semaphores(
        self, *, prefix: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None
    ) -> Page:
        """One page of semaphores with holders, in name order (``SemaphoreInfo`` items)."""
        return self._lines.list("semaphore", prefix, limit, cursor)

    # -- change feeds ---------------------------------------------------------------------

    def observe(
        self,
        name: Optional[str] = None,
        *,
        prefix: Optional[str] = None,
        kind: Optional[str] = None,
        after: Optional[str] = None,
        idle_timeout: float = 45.0,
        retry_for: Optional[float] = None,
        on_retry: Optional[Callable[[LeaseholdError, float], None]] = None,
    ) -> EventStream:
        """The events of one lock (``name``) or of every name under ``prefix`` ("" = all the
        key may see), as an iterator of ``Event``::

            with client.observe("scheduler") as events:
                for e in events:
                    if e.type == "held": print("leader", e.value, "epoch", e.token)

        A new stream starts with a ``reset`` event and the current holders. A dropped or
        silent connection (``idle_timeout`` s without even a keep-alive) is reopened with
        backoff and resumes after the last event delivered, so none is lost or repeated;
        ``on_retry(error, delay)`` hears about it and ``retry_for`` bounds it (default:
        forever). 401, 403 and 400 raise. ``after`` resumes after an earlier event's ``id``;
        ``kind`` picks ``lock`` or ``semaphore``. ``close()`` (from any thread) ends it.
        """
        if (name is None) == (prefix is None):
            raise TypeError("observe takes a name or prefix=, not both")
        query = urllib.parse.urlencode(defined(prefix=name if prefix is None else prefix, kind=kind))
        only: Callable[[Any], bool] = (lambda e: e.type == "reset" or e.name == name) if name is not None else (
            lambda e: True
        )
        return EventStream(
            self._lines.transport,
            "/events?" + query,
            only,
            after=after,
            connect_timeout=self.timeout,
            idle_timeout=idle_timeout,
            retry_for=retry_for,
            on_retry=on_retry,
        )


class Semaphore:
    """A semaphore: at most ``limit`` holders at once, each permit with its own fencing
    token. Get one from ``client.semaphore(name, limit)``; the calls mirror the client's
    lock calls and answer ``Grant`` objects with ``limit`` set."""

    def __init__(self, lines: Lines, name: str, limit: Optional[int]) -> None:
        self._lines = lines
        self.name = name
        self.limit = limit

    def __repr__(self) -> str:
        return "Semaphore(%r, limit=%r)" % (self.name, self.limit)

    @property
    def _line(self) -> Line:
        return Line("semaphore", self.name, self.limit)

    @property
    def _limited(self) -> Line:
        if self.limit is None:
            raise TypeError("semaphore %s: acquiring needs its limit, client.semaphore(name, limit)" % self.name)
        return self._line

    def acquire(
        self,
        *,
        ttl: Optional[int] = None,
        wait: Optional[float] = None,
        owner: Optional[str] = None,
        value: Optional[str] = None,
        queue: bool = False,
        ticket_ttl: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        retry_for: float = 10.0,
    ) -> Any:
        """Takes a permit (see ``Client.acquire``; ``queue=True`` may answer a ``Ticket``).
        ``LimitMismatch`` when the holders use another limit."""
        taken = self._lines.take(
            self._limited,
            ttl=ttl,
            wait=wait,
            owner=owner,
            value=value,
            queue=queue,
            ticket_ttl=ticket_ttl,
            idempotency_key=idempotency_key,
            retry_for=retry_for,
        )
        return granted(taken, queue)

    def redeem(self, ticket: str, *, wait: Optional[float] = None, retry_for: float = 10.0) -> Any:
        """Comes back with a ticket: the permit at its turn, else the ticket's new position."""
        return granted(self._lines.redeem(self._limited, ticket, wait=wait, retry_for=retry_for), True)

    def leave(self, ticket: str) -> None:
        self._lines.leave(self._line, ticket)

    def renew(self, lease: str, *, value: Optional[str] = None) -> Grant:
        return self._lines.renew(self._line, lease, value=value)

    def release(self, lease: str) -> None:
        self._lines.release(self._line, lease)

    def force_release(self, token: int) -> None:
        """Ends the permit with fencing token ``token`` (an admin API key only)."""
        self._lines.force_release(self._line, token)

    def inspect(self) -> Optional[SemaphoreInfo]:
        """The holders (oldest first, never leases) and how many wait; None when nobody holds a permit."""
        return self._lines.inspect_at(self._line).info

    status = inspect

    def inspect_at(self, *, index: Optional[int] = None, wait: Optional[float] = None) -> Indexed:
        """As ``Client.inspect_at``, for the semaphore."""
        return self._lines.inspect_at(self._line, index, wait)

    def fence(self, token: int) -> bool:
        """Whether ``token`` is a current permit's fencing token (see ``Client.fence``)."""
        return self._lines.fence(self._line, token)

    def write_state(self, lease: str, value: str) -> State:
        """Writes the semaphore's one guarded state: the holder of any current permit may
        (the state records that permit's token); ``LockLost`` when ``lease``'s permit is not
        current. See ``Client.write_state``."""
        return self._lines.write_state(self._line, lease, value)

    def read_state(self) -> Optional[State]:
        """The semaphore's guarded state, or None when never written."""
        return self._lines.read_state(self._line)

    def permit(
        self,
        *,
        ttl: Optional[int] = None,
        wait: Optional[float] = None,
        owner: Optional[str] = None,
        value: Optional[str] = None,
        margin: Optional[float] = None,
        release: bool = True,
        queue: bool = False,
        ticket_ttl: Optional[int] = None,
        poll_wait: float = 20.0,
        on_queued: Optional[Callable[[int], None]] = None,
        on_lost: Optional[Callable[[LockLost], None]] = None,
        idempotency_key: Optional[str] = None,
        retry_for: float = 10.0,
        stop: Optional[threading.Event] = None,
    ) -> HeldLock:
        """One permit as a context manager, held as ``Client.lock`` holds a lock."""
        return HeldLock(
            self._lines,
            self._limited,
            dict(
                ttl=ttl,
                wait=wait,
                owner=owner,
                value=value,
                queue=queue,
                ticket_ttl=ticket_ttl,
                poll_wait=poll_wait,
                on_queued=on_queued,
                idempotency_key=idempotency_key,
                retry_for=retry_for,
                stop=stop,
            ),
            margin=margin,
            release=release,
            on_lost=on_lost,
        )


