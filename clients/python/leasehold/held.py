"""Holding a lock while a ``with`` block runs: the renewals on a background thread, the
client's own validity deadline, and telling the block when the lock is lost."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, Callable, Dict, Optional, Type

from ._http import Abort
from ._lines import Line, Lines, Taken, backoff, sleep
from .errors import Cancelled, LeaseholdError, LockExpired, LockHeld, LockLost
from .models import Grant, State


class HeldLock:
    """A lock (or a semaphore permit) held while a ``with`` block runs; made by
    ``Client.lock`` or ``Semaphore.permit``. Entering acquires, leaving releases.

    Inside the block: ``token`` (the fencing token: pass it with every write), ``lease``,
    ``grant`` (the latest), ``valid_until`` (epoch seconds on this machine's clock until
    which the lock is known to be held), ``remaining()``, ``renewals``; ``lost`` (a
    ``threading.Event`` set once the lock is lost), ``reason`` (the ``LockLost`` that says
    why) and ``check()``, which raises that ``LockLost`` once the lock is lost.
    """

    def __init__(
        self,
        lines: Lines,
        line: Line,
        take: Dict[str, Any],
        *,
        margin: Optional[float],
        release: bool,
        on_lost: Optional[Callable[[LockLost], None]],
    ) -> None:
        self._lines = lines
        self._line = line
        self._take = take
        self._margin = margin
        self._release = release
        self._on_lost = on_lost
        self._cond = threading.Condition()
        #: Set once the lock is lost (a renew answered 410, or this client's deadline passed).
        self.lost = threading.Event()
        #: Why the lock was lost: a ``LockLost`` (``LockExpired`` for the deadline), else None.
        self.reason: Optional[LockLost] = None
        #: Successful renewals so far.
        self.renewals = 0
        self._grant: Optional[Grant] = None
        self._since = 0.0
        self._deadline = 0.0
        self._next_renew = 0.0
        self._failures = 0
        self._entered = False
        self._ended = False
        # Abandons a renew in flight once its answer can no longer count.
        self._inflight = Abort()
        self._threads: "list[threading.Thread]" = []

    # -- what the block sees ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._line.name

    @property
    def grant(self) -> Grant:
        if self._grant is None:
            raise RuntimeError("%s is not held yet: use it in a with block" % self._line)
        return self._grant

    @property
    def token(self) -> int:
        return self.grant.token

    @property
    def lease(self) -> str:
        return self.grant.lease

    @property
    def valid_until(self) -> float:
        """Epoch seconds (this machine's clock) until which the lock is known to be held."""
        return time.time() + self.remaining()

    def remaining(self) -> float:
        """Seconds the lock is still known to be held (0 once lost)."""
        if self.lost.is_set():
            return 0.0
        return max(0.0, self._deadline - time.monotonic())

    def check(self) -> None:
        """Raises ``LockLost`` (``LockExpired`` when this client's deadline passed without
        a successful renew) once the lock is lost; call it before each step of the work."""
        if not self.lost.is_set() and self._entered and not self._ended and time.monotonic() >= self._deadline:
            self._lose(self._expired())
        if self.lost.is_set() and self.reason is not None:
            raise self.reason.with_traceback(None)

    def __repr__(self) -> str:
        state = "lost" if self.lost.is_set() else "held" if self._grant is not None and not self._ended else "not held"
        token = " token=%d" % self._grant.token if self._grant is not None else ""
        return "<%s %s%s %s>" % (type(self).__name__, self._line, token, state)

    # -- with --------------------------------------------------------------------------------

    def __enter__(self) -> "HeldLock":
        if self._entered:
            raise RuntimeError("%s: a HeldLock is entered once; call client.lock(...) again" % self._line)
        self._entered = True
        taken = self._acquire()
        assert taken.grant is not None
        self._grant = taken.grant
        self._since = taken.since
        self._set_deadline()
        try:
            self._confirm()
        except BaseException:
            self._end()
            raise
        self._next_renew = self._since + self._ttl / 3
        for target, what in ((self._renew_loop, "renew"), (self._watch_deadline, "deadline")):
            t = threading.Thread(target=target, name="leasehold-%s %s" % (what, self._line.name), daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self._end()

    def _acquire(self) -> Taken:
        o = self._take
        if o.get("queue"):
            return self._lines.wait_in_line(
                self._line,
                ttl=o["ttl"],
                owner=o["owner"],
                value=o["value"],
                lock_delay=o.get("lock_delay"),
                wait=o["wait"],
                ticket_ttl=o["ticket_ttl"],
                poll_wait=o["poll_wait"],
                on_queued=o["on_queued"],
                idempotency_key=o["idempotency_key"],
                retry_for=o["retry_for"],
                stop=o["stop"],
            )
        fields = {k: o[k] for k in ("ttl", "wait", "owner", "value", "idempotency_key", "retry_for", "stop")}
        return self._lines.take(self._line, lock_delay=o.get("lock_delay"), **fields)

    # -- the renewals -------------------------------------------------------------------------

    @property
    def _ttl(self) -> float:
        return float(self.grant.ttl)

    def _set_deadline(self) -> None:
        margin = self._margin if self._margin is not None else min(2.0, self._ttl / 10)
        self._deadline = self._since + self._ttl - margin

    def _expired(self) -> LockExpired:
        noun = "lock" if self._line.kind == "lock" else "permit"
        return LockExpired(
            "%s: no successful renew before this client's deadline; the %s may have expired" % (self._line, noun)
        )

    def _confirm(self) -> None:
        """When the acquire took long (it waited, or it was a replay of an earlier attempt's
        grant) the deadline counted from its send time is near or past: renew once before
        the block runs, so that it starts with a full, confirmed TTL."""
        if time.monotonic() < self._since + self._ttl / 3:
            return
        give_up_at = time.monotonic() + self._take["retry_for"]
        attempt = 0
        while True:
            sent = time.monotonic()
            try:
                self._renewed(self._lines.renew(self._line, self.lease), sent)
                return
            except LeaseholdError as err:
                if not err.transient:
                    raise
                delay = backoff(attempt, 1.0, err.retry_after)
                attempt += 1
                if time.monotonic() + delay > give_up_at:
                    raise
                sleep(delay, self._take.get("stop"))

    def _renewed(self, grant: Grant, sent: float) -> None:
        self._grant = grant
        self._since = sent
        self._failures = 0
        self._set_deadline()
        self._next_renew = sent + self._ttl / 3

    def _renew_loop(self) -> None:
        while True:
            with self._cond:
                while not (self._ended or self.lost.is_set()):
                    left = self._next_renew - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._ended or self.lost.is_set():
                    return
                # A renew answered after the deadline is no use: the lock already counts as lost.
                timeout = max(0.05, self._deadline - time.monotonic())
            sent = time.monotonic()
            try:
                grant = self._lines.renew(self._line, self.lease, timeout=timeout, abort=self._inflight)
            except LeaseholdError as err:
                if self._ended or self.lost.is_set():
                    return
                if not err.transient and not isinstance(err, Cancelled):
                    # 410: someone else's now (or expired). Other refusals (401, 403, 400) won't heal either.
                    self._lose(err if isinstance(err, LockLost) else _lost_by(self._line, err))
                    return
                # No answer or 503: try again soon; the deadline decides when it is too late.
                with self._cond:
                    self._next_renew = time.monotonic() + backoff(self._failures, self._ttl / 6)
                    self._failures += 1
                continue
            with self._cond:
                if self._ended or self.lost.is_set():
                    return
                self._renewed(grant, sent)
                self.renewals += 1
                self._cond.notify_all()

    def _watch_deadline(self) -> None:
        with self._cond:
            while not (self._ended or self.lost.is_set()):
                left = self._deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._ended or self.lost.is_set():
                return
        self._lose(self._expired())

    def _lose(self, reason: LockLost) -> None:
        with self._cond:
            if self._ended or self.lost.is_set():
                return
            self.reason = reason
            self.lost.set()
            self._cond.notify_all()
        self._inflight.abort()
        if self._on_lost is not None:
            try:
                self._on_lost(reason)
            except Exception:  # noqa: BLE001 - a callback's failure must not kill the renewal thread silently
                import traceback

                traceback.print_exc()

    def renew_with(self, value: str) -> Grant:
        """A renew now that also replaces the published value; it counts as a renewal. A
        410 says the lock is gone: ``lost`` is set and ``LockLost`` raised. Other failures
        only raise: the renewals and the deadline still decide whether the lock is held."""
        sent = time.monotonic()
        grant = self._as_holder(lambda: self._lines.renew(self._line, self.lease, value=value))
        with self._cond:
            if not (self._ended or self.lost.is_set()):
                self._renewed(grant, sent)
                self.renewals += 1
                self._cond.notify_all()
        return grant

    def fence(self) -> bool:
        """Asks the service whether this grant's token is still current (a linearizable
        read): True, or False when it is not, which also counts as losing the lock
        (``lost`` is set, ``reason`` is a ``LockLost``). False at once, without asking, once
        the lock counts as lost or the block has ended."""
        if self.lost.is_set() or self._ended or self._grant is None:
            return False
        current = self._lines.fence(self._line, self.token)
        if not current:
            self._lose(LockLost("%s: its fencing token %d is no longer current" % (self._line, self.token)))
        return current

    def write_state(self, value: str) -> State:
        """Writes the guarded state (at most 65,536 UTF-8 bytes) in the etcd transaction that
        checks this grant is still current. ``LockLost`` (nothing written) when it is not,
        which also sets ``lost``; once the lock counts as lost, raises its ``reason``
        without sending."""
        return self._as_holder(lambda: self._lines.write_state(self._line, self.lease, value))

    def read_state(self) -> Optional[State]:
        """The guarded state as last written (by this or an earlier grant), or None."""
        return self._lines.read_state(self._line)

    def _as_holder(self, call: Callable[[], Any]) -> Any:
        """A call that acts with this grant's lease: refused without sending once the lock
        counts as lost (or the block ended); a 410 says it is gone, and ``lost`` is set."""
        if self.lost.is_set() and self.reason is not None:
            raise self.reason.with_traceback(None)
        if self._ended or self._grant is None:
            raise LockLost("%s: not held here" % self._line)
        try:
            return call()
        except LockLost as err:
            self._lose(err)
            raise

    def _end(self) -> None:
        """Stops renewing and releases (best effort; never raises)."""
        with self._cond:
            if self._ended:
                return
            self._ended = True
            self._cond.notify_all()
        self._inflight.abort()
        for t in self._threads:
            t.join(5.0)
        # A 410 said the lock is someone else's (or gone): nothing to release.
        gone = self.reason is not None and self.reason.code == "lock-lost"
        if self._grant is None or not self._release or gone:
            return
        try:
            self._lines.release(self._line, self._grant.lease, timeout=5.0)
        except LeaseholdError:
            pass  # already gone (410), or the service is unreachable: the lease expires on its own


class Leadership(HeldLock):
    """The leadership while a ``campaign`` block runs: a held lock (``token`` is this
    term's epoch) with the published ``value`` and ``proclaim(value)``."""

    @property
    def value(self) -> str:
        return self._take["value"]

    def proclaim(self, value: str) -> Grant:
        """Publishes a new value (a renew carrying it). ``LockLost`` when the leadership is gone."""
        grant = self.renew_with(value)
        self._take["value"] = value
        return grant

    def _acquire(self) -> Taken:
        o = self._take
        wait = o["wait"]
        refused = 0
        while True:
            if o["stop"] is not None and o["stop"].is_set():
                raise Cancelled("%s: campaign stopped" % self._line)
            try:
                return self._lines.take(
                    self._line,
                    ttl=o["ttl"],
                    wait=wait,
                    owner=o["owner"],
                    value=o["value"],
                    lock_delay=o["lock_delay"],
                    retry_for=o["retry_for"],
                    stop=o["stop"],
                )
            except LeaseholdError as err:
                if not (isinstance(err, LockHeld) or err.transient):
                    raise
                # After a real wait in line, ask again at once; otherwise back off.
                if not isinstance(err, LockHeld) or wait < 1:
                    sleep(backoff(refused, 5.0, err.retry_after), o["stop"])
                    refused += 1


def _lost_by(line: Line, err: LeaseholdError) -> LockLost:
    """A refusal of a renew that can't heal (401, 403, 400) as the reason the lock is lost."""
    lost = LockLost("%s: the renew was refused: %s" % (line, err), code=err.code, status=err.status, problem=err.problem)
    lost.__cause__ = err
    return lost
