"""``observe``: the service's event stream (``GET /events``, Server-Sent Events) as an
iterator that reconnects on its own, resuming with ``Last-Event-ID`` so that a dropped
connection loses no event."""

from __future__ import annotations

import codecs
import http.client
import json
import socket
import threading
import time
from types import TracebackType
from typing import Callable, Iterator, List, Optional, Type

from ._http import Abort, Transport
from ._lines import backoff
from .errors import InvalidResponse, LeaseholdError, NetworkError, RequestTimeout, problem_error
from .models import Event


class SseEvent:
    """One dispatched SSE event: ``id`` is the last event ID in force, which this event's
    own block set when ``has_id`` (else an earlier block did)."""

    __slots__ = ("event", "data", "id", "has_id")

    def __init__(self, event: str, data: str, id: str, has_id: bool) -> None:
        self.event = event
        self.data = data
        self.id = id
        self.has_id = has_id


class SseParser:
    """The WHATWG event-stream format, fed decoded text in arbitrary chunks (a line may be
    split anywhere, even between CR and LF). Calls ``on_event`` once per complete event,
    in order; comments (the server's keep-alives) dispatch nothing; ``on_retry`` hears the
    server's reconnection delay in ms."""

    def __init__(
        self,
        last_event_id: str,
        on_event: Callable[[SseEvent], None],
        on_retry: Optional[Callable[[int], None]] = None,
    ) -> None:
        self.last_event_id = last_event_id
        self._id_buffer = last_event_id
        self._on_event = on_event
        self._on_retry = on_retry
        self._buffer = ""
        self._pending_cr = False
        self._bom_checked = False
        self._event = ""
        self._data: List[str] = []
        self._block_has_id = False

    def push(self, text: str) -> None:
        if not self._bom_checked and text:
            self._bom_checked = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = False
        buf = self._buffer + text
        start = 0
        n = len(buf)
        while True:
            cr = buf.find("\r", start)
            lf = buf.find("\n", start)
            end = lf if cr == -1 else cr if lf == -1 else min(cr, lf)
            if end == -1:
                break
            self._line(buf[start:end])
            if buf[end] == "\r":
                if end + 1 == n:
                    self._pending_cr = True
                    start = end + 1
                    break
                start = end + 2 if buf[end + 1] == "\n" else end + 1
            else:
                start = end + 1
        self._buffer = buf[start:]

    def _line(self, line: str) -> None:
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            return
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self._id_buffer = value
                self._block_has_id = True
        elif field == "retry":
            if value.isdigit() and self._on_retry is not None:
                self._on_retry(int(value))
        # Unknown fields are ignored, as the format requires.

    def _dispatch(self) -> None:
        self.last_event_id = self._id_buffer
        event = self._event or "message"
        data = self._data
        has_id = self._block_has_id
        self._event = ""
        self._data = []
        self._block_has_id = False
        # A block without data lines dispatches nothing (its id, if any, still counts).
        if not data:
            return
        self._on_event(SseEvent(event, "\n".join(data), self.last_event_id, has_id))


def to_event(kind: str, id: str, data: str) -> Optional[Event]:
    """The typed event for one SSE event; None for kinds this client does not know."""
    if kind not in ("held", "free", "reset"):
        return None
    try:
        body = json.loads(data) if data.strip() else {}
    except ValueError:
        body = {}
    fields = body if isinstance(body, dict) else {}
    try:
        revision = int(id)
    except ValueError:
        revision = 0
    if kind == "reset":
        return Event(type=kind, id=id, revision=revision, reason=fields.get("reason", ""))
    if not isinstance(fields.get("name"), str) or not isinstance(fields.get("token"), int):
        return None
    return Event(
        type=kind,
        id=id,
        revision=revision,
        kind=fields.get("kind", "lock"),
        name=fields["name"],
        token=fields["token"],
        owner=fields.get("owner"),
        value=fields.get("value"),
        ttl=fields.get("ttl"),
    )


class EventStream:
    """What ``Client.observe`` returns: an iterator of ``Event`` that reconnects on its own.

    ``last_event_id`` is the id of the last event delivered (what a reconnect resumes
    after; pass it as ``after=`` to a later stream). ``close()``, from any thread, closes
    the connection and ends the iteration; so does leaving a ``with`` block.
    """

    def __init__(
        self,
        transport: Transport,
        path: str,
        only: Callable[[Event], bool],
        *,
        after: Optional[str],
        connect_timeout: float,
        idle_timeout: float,
        retry_for: Optional[float],
        on_retry: Optional[Callable[[LeaseholdError, float], None]],
    ) -> None:
        self._transport = transport
        self._path = path
        self._only = only
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._retry_for = retry_for
        self._on_retry = on_retry
        self.last_event_id = after or ""
        self._closed = threading.Event()
        self._abort = Abort()
        self._events = self._run()

    def __iter__(self) -> "EventStream":
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def close(self) -> None:
        """Closes the connection and ends the iteration (safe from any thread)."""
        self._closed.set()
        self._abort.abort()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()

    def _run(self) -> Iterator[Event]:
        failures = 0
        failing_since: Optional[float] = None
        server_retry: List[float] = []
        while not self._closed.is_set():
            queue: List[Event] = []
            # The events of one etcd revision arrive together and only the last carries the
            # id: they are held back until it comes, so that a resume never splits a revision.
            group: List[SseEvent] = []

            def on_event(e: SseEvent) -> None:
                group.append(e)
                if not e.has_id:
                    return
                for member in group:
                    event = to_event(member.event, e.id, member.data)
                    if event is not None and self._only(event):
                        queue.append(event)
                del group[:]

            parser = SseParser(self.last_event_id, on_event, lambda ms: server_retry.append(ms / 1000))
            headers = {"Accept": "text/event-stream"}
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
            try:
                ex = self._transport.open(
                    "GET", self._path, timeout=self._connect_timeout, headers=headers, abort=self._abort
                )
                try:
                    res = ex.response
                    if res.status != 200:
                        try:
                            body = json.loads(res.read().decode("utf-8") or "null")
                        except (ValueError, OSError, http.client.HTTPException):
                            body = None
                        raise problem_error("GET", "/events", res.status, res.reason, res.headers, body)
                    ctype = res.headers.get("content-type", "")
                    if not ctype.startswith("text/event-stream"):
                        raise InvalidResponse(
                            "GET /events: answered %s, not an event stream" % (ctype or "no content type"),
                            status=res.status,
                        )
                    # From now on the timeout is how long the stream may stay silent.
                    ex.sock.settimeout(self._idle_timeout)
                    decoder = codecs.getincrementaldecoder("utf-8")("replace")
                    while True:
                        try:
                            chunk = res.read1(65536)
                        except socket.timeout:
                            raise RequestTimeout(
                                "GET /events: nothing from the service for %g s" % self._idle_timeout
                            ) from None
                        except (OSError, http.client.HTTPException, ValueError) as err:
                            raise NetworkError("GET /events: the stream broke: %s" % err) from None
                        if not chunk:
                            break
                        # Anything at all (a keep-alive included) shows the connection works.
                        failures = 0
                        failing_since = None
                        parser.push(decoder.decode(chunk))
                        # Only ids of whole events count: a reconnect resumes after the last one delivered.
                        while queue:
                            event = queue.pop(0)
                            self.last_event_id = event.id
                            yield event
                        self.last_event_id = parser.last_event_id or self.last_event_id
                    error: LeaseholdError = NetworkError("GET /events: the service ended the stream")
                finally:
                    ex.close()
            except LeaseholdError as err:
                if self._closed.is_set():
                    return
                if not (err.transient or err.code == "network-error"):
                    raise
                error = err
            if self._closed.is_set():
                return
            if failing_since is None:
                failing_since = time.monotonic()
            if error.retry_after is not None:
                delay = backoff(0, 0, error.retry_after)
            else:
                delay = max(server_retry[-1] if server_retry else 0.0, backoff(failures, 5.0))
                failures += 1
            if self._retry_for is not None and time.monotonic() + delay - failing_since > self._retry_for:
                raise error
            if self._on_retry is not None:
                self._on_retry(error, delay)
            if self._closed.wait(delay):
                return


__all__ = ["EventStream", "SseParser", "to_event"]
