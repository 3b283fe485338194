"""The calls on a line (a lock or a semaphore) that the client, held locks and
campaigns share: acquire with retries, redeem, waiting in line, renew, release, reads."""

from __future__ import annotations

import random
import threading
import time
import urllib.parse
import uuid
from typing import Any, Callable, Dict, NamedTuple, Optional, Union

from ._http import Abort, Transport
from .errors import Cancelled, FenceStale, InvalidResponse, LeaseholdError, LockHeld, LockLost, StateNotFound
from .models import Grant, Indexed, LockInfo, Page, SemaphoreInfo, State, Ticket


class Line(NamedTuple):
    """A lock (a line of one holder) or a semaphore (a line of ``limit`` holders), by name."""

    kind: str  # "lock" or "semaphore"
    name: str
    limit: Optional[int] = None

    @property
    def path(self) -> str:
        # Names use A–Z a–z 0–9 . _ - : ~ @, all legal in a path segment; anything else is
        # escaped so that the service (not a misrouted URL) rejects it with a 400.
        return "/%ss/%s" % (self.kind, urllib.parse.quote(self.name, safe="._-:~@"))

    def __str__(self) -> str:
        return "%s %s" % (self.kind, self.name)


class Taken(NamedTuple):
    """What an acquire or a redeem came back with: a grant (and the monotonic time its
    lease can have started at the earliest) or a place in line."""

    grant: Optional[Grant] = None
    since: float = 0.0
    ticket: Optional[Ticket] = None


def backoff(attempt: int, cap: float, retry_after: Optional[float] = None) -> float:
    """Seconds before retry number ``attempt`` (0-based): ``Retry-After`` when the service
    gave one, else exponential from 0.1 s up to ``cap``; jittered either way, so callers
    that failed together do not come back together."""
    if retry_after is not None:
        return retry_after + random.random() * 0.25
    ceiling = min(cap, 0.1 * 2**attempt)
    return ceiling / 2 + random.random() * ceiling / 2


def sleep(seconds: float, stop: Optional[threading.Event]) -> None:
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise Cancelled("stopped while waiting")


def defined(**fields: Any) -> Dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class Lines:
    """The calls on one line, for locks and semaphores alike."""

    def __init__(self, transport: Transport, timeout: float) -> None:
        self.transport = transport
        #: Deadline of each request in seconds, on top of a wait.
        self.timeout = timeout

    def take(
        self,
        line: Line,
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
        stop: Optional[threading.Event] = None,
    ) -> Taken:
        """Acquire: the grant, or with ``queue`` possibly a place in line."""
        fields = defined(ttl=ttl, owner=owner, value=value, lockDelay=lock_delay, limit=line.limit)
        if queue:
            fields.update(defined(queue=True, ticketTtl=ticket_ttl))
        key = idempotency_key or str(uuid.uuid4())
        return self._post(line, fields, wait, retry_for, key, stop)

    def redeem(
        self,
        line: Line,
        ticket: str,
        *,
        wait: Optional[float] = None,
        retry_for: float = 10.0,
        stop: Optional[threading.Event] = None,
    ) -> Taken:
        """Comes back with a ticket. A redeem repeated after a lost answer gets the same grant (200)."""
        return self._post(line, defined(ticket=ticket, limit=line.limit), wait, retry_for, None, stop)

    def leave(self, line: Line, ticket: str, timeout: Optional[float] = None) -> None:
        # In the body, like a lease: a secret in a URL ends up in access logs.
        self.transport.call(
            "POST", line.path + "/release", timeout=timeout or self.timeout, json_body={"ticket": ticket}
        )

    def renew(
        self,
        line: Line,
        lease: str,
        *,
        value: Optional[str] = None,
        timeout: Optional[float] = None,
        abort: Optional[Abort] = None,
    ) -> Grant:
        answer = self.transport.call(
            "PUT",
            line.path + "/renew",
            timeout=self.timeout if timeout is None else timeout,
            json_body=defined(lease=lease, value=value),
            abort=abort,
        )
        return Grant.from_json(answer.body, line.kind)

    def release(self, line: Line, lease: str, timeout: Optional[float] = None) -> None:
        # POST …/release, as every leasehold client sends it: HTTP gives a DELETE's body no
        # meaning, so a proxy may drop it (and Node's fetch closes the connection after one).
        self.transport.call("POST", line.path + "/release", timeout=timeout or self.timeout, json_body={"lease": lease})

    def force_release(self, line: Line, token: Optional[int] = None) -> None:
        query = urllib.parse.urlencode(defined(force="true", token=token))
        self.transport.call("DELETE", "%s?%s" % (line.path, query), timeout=self.timeout)

    def inspect_at(self, line: Line, index: Optional[int] = None, wait: Optional[float] = None) -> Indexed:
        """The state (None when nobody holds it) and its index; with ``index``, a blocking read."""
        blocking = index is not None
        query = urllib.parse.urlencode(
            defined(index=index, wait=round(wait, 3) if blocking and wait is not None else None)
        )
        path = line.path + ("?" + query if query else "")
        timeout = self.timeout + ((wait or 0) if blocking else 0)
        answer = self.transport.call("GET", path, timeout=timeout, free=True)
        raw = answer.headers.get("leasehold-index")
        if raw is None and isinstance(answer.body, dict):
            raw = answer.body.get("index")
        try:
            at = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            if blocking:
                raise InvalidResponse("GET %s: the answer carries no index" % path, status=answer.status) from None
            at = 0
        if answer.status == 404:
            return Indexed(None, at)
        info = SemaphoreInfo.from_json(answer.body) if line.kind == "semaphore" else LockInfo.from_json(answer.body)
        return Indexed(info, at)

    def fence(self, line: Line, token: int) -> bool:
        """A fence check: a 409 ``fence-stale`` is the answer False, not a failure."""
        path = "%s/fence?%s" % (line.path, urllib.parse.urlencode({"token": token}))
        try:
            body = self.transport.call("GET", path, timeout=self.timeout).body
        except FenceStale:
            return False
        # Only an answer that says so counts as current: a fence must never pass by accident.
        if not (isinstance(body, dict) and body.get("current") is True and body.get("token") == token):
            raise InvalidResponse("GET %s: the 200 answer does not say the token is current" % path, status=200)
        return True

    def write_state(self, line: Line, lease: str, value: str) -> State:
        # The lease in the body, never in the URL.
        body = self.transport.call(
            "PUT", line.path + "/state", timeout=self.timeout, json_body={"lease": lease, "value": value}
        ).body
        return State.from_json(body, line.kind)

    def read_state(self, line: Line) -> Optional[State]:
        """The guarded state; a 404 ``state-not-found`` is the answer None."""
        try:
            body = self.transport.call("GET", line.path + "/state", timeout=self.timeout).body
        except StateNotFound:
            return None
        return State.from_json(body, line.kind)

    def list(self, kind: str, prefix: Optional[str], limit: Optional[int], cursor: Optional[str]) -> Page:
        query = urllib.parse.urlencode(defined(prefix=prefix, limit=limit, cursor=cursor))
        body = self.transport.call("GET", "/%ss%s" % (kind, "?" + query if query else ""), timeout=self.timeout).body
        parse = SemaphoreInfo.from_json if kind == "semaphore" else LockInfo.from_json
        return Page([parse(item) for item in body.get("items", [])], body.get("cursor"))

    def wait_in_line(
        self,
        line: Line,
        *,
        ttl: Optional[int],
        owner: Optional[str],
        value: Optional[str],
        lock_delay: Optional[int],
        wait: Optional[float],
        ticket_ttl: Optional[int],
        poll_wait: float,
        on_queued: Optional[Callable[[int], None]],
        idempotency_key: Optional[str],
        retry_for: float,
        stop: Optional[threading.Event],
    ) -> Taken:
        """Waits in line for a grant, as long as it takes or up to ``wait`` s: joins with a
        ticket (which answers at once, so the caller holds the ticket it needs to leave) and
        redeems it with long polls of at most ``poll_wait`` s, so that no single request
        waits longer than the service allows. A ticket that dropped out of line (not
        redeemed within its TTL, say through an outage) joins again, at the back. Whatever
        ends the wait without a grant leaves the line."""
        deadline = float("inf") if wait is None else time.monotonic() + wait
        # The caller's Idempotency-Key belongs to the first join; a later join is a new request.
        key = idempotency_key
        ticket: Optional[str] = None
        rejoins = 0
        try:
            while True:
                if stop is not None and stop.is_set():
                    raise Cancelled("%s: stopped while waiting in line" % line)
                if ticket is None:
                    taken = self.take(
                        line,
                        ttl=ttl,
                        owner=owner,
                        value=value,
                        lock_delay=lock_delay,
                        queue=True,
                        ticket_ttl=ticket_ttl,
                        wait=0,
                        idempotency_key=key,
                        retry_for=retry_for,
                        stop=stop,
                    )
                    key = None
                else:
                    poll = min(poll_wait, max(0.0, deadline - time.monotonic()))
                    try:
                        taken = self.redeem(line, ticket, wait=poll, retry_for=retry_for, stop=stop)
                    except LockLost:
                        ticket = None
                        sleep(backoff(rejoins, 2.0), stop)
                        rejoins += 1
                        continue
                if taken.grant is not None:
                    ticket = None
                    return taken
                assert taken.ticket is not None
                ticket = taken.ticket.ticket
                if on_queued is not None:
                    on_queued(taken.ticket.position)
                if time.monotonic() >= deadline:
                    # Not an answer of the service (that was 202 each time): status 0, no problem body.
                    raise LockHeld(
                        "%s: still in line after waiting %g s (%d ahead)" % (line, wait, taken.ticket.position)
                    )
        finally:
            # Given up (or failed): the place goes to the next in line at once, not after ticket_ttl.
            if ticket is not None:
                try:
                    self.leave(line, ticket, timeout=5.0)
                except LeaseholdError:
                    pass

    def _post(
        self,
        line: Line,
        fields: Dict[str, Any],
        wait: Optional[float],
        retry_for: float,
        key: Optional[str],
        stop: Optional[threading.Event],
    ) -> Taken:
        """POSTs an acquire or a redeem, retrying transient failures (no answer, 429, 502,
        503, 504) for ``retry_for`` s after the wait, each retry with the same
        Idempotency-Key and the wait that is left."""
        start = time.monotonic()
        wait_end = start + (wait or 0)
        give_up_at = wait_end + retry_for
        first_sent: Optional[float] = None
        headers = {"Idempotency-Key": key} if key is not None else None
        attempt = 0
        while True:
            sent = time.monotonic()
            if first_sent is None:
                first_sent = sent
            left = None if wait is None else max(0.0, wait_end - sent)
            body = dict(fields)
            if left is not None:
                body["wait"] = round(left, 3)
            try:
                answer = self.transport.call(
                    "POST", line.path, timeout=self.timeout + (left or 0), json_body=body, headers=headers
                )
                if answer.status == 202:
                    return Taken(ticket=Ticket.from_json(answer.body))
                # 201: created by this attempt. 200: a replay of an earlier attempt's grant,
                # whose lease may have started as early as the first attempt's send time.
                grant = Grant.from_json(answer.body, line.kind)
                return Taken(grant=grant, since=first_sent if answer.status == 200 else sent)
            except LeaseholdError as err:
                if not (err.transient or err.code == "invalid-response"):
                    raise
                delay = backoff(attempt, 2.0, err.retry_after)
                attempt += 1
                if time.monotonic() + delay > give_up_at:
                    raise
                sleep(delay, stop)


Result = Union[Grant, Ticket]


def granted(taken: Taken, queued: bool) -> Result:
    if taken.grant is not None:
        return taken.grant
    if queued and taken.ticket is not None:
        return taken.ticket
    raise InvalidResponse("the service answered a place in line to an acquire without queue")
