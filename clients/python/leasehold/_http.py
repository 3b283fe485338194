"""HTTP for the client: ``http.client``, one connection per call (so calls from the
renewal thread and the caller's thread never share one), each abortable from another
thread."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import urllib.parse
from typing import Any, Dict, Optional, Set

from .errors import Cancelled, InvalidResponse, LeaseholdError, NetworkError, RequestTimeout, problem_error


class Abort:
    """Abandons calls from another thread: shutting their sockets down wakes a blocked read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: Set[socket.socket] = set()
        self.aborted = False

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def enter(self, sock: socket.socket) -> None:
        with self._lock:
            if self.aborted:
                raise Cancelled("the call was abandoned")
            self._socks.add(sock)

    def leave(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)


class Answer:
    """A complete answer: status, headers (case-insensitive ``get``) and the decoded JSON body."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Exchange:
    """A request sent and its response, body unread; ``close()`` when done with it."""

    def __init__(
        self, conn: http.client.HTTPConnection, sock: socket.socket, response: http.client.HTTPResponse, abort: Optional[Abort]
    ) -> None:
        self.conn = conn
        self.sock = sock
        self.response = response
        self._abort = abort

    def close(self) -> None:
        self.response.close()
        self.conn.close()
        if self._abort is not None:
            self._abort.leave(self.sock)


def has_credentials(url: str) -> bool:
    """Whether ``url`` has a user name or password in it: in its authority as urlsplit reads
    it, or as a browser's parser would read one where urlsplit sees a path
    (``http:u:p@host``)."""
    if urllib.parse.urlsplit(url).netloc.rpartition("@")[0]:
        return True
    _, colon, rest = url.partition(":")
    authority = re.split(r"[/\\?#]", rest.lstrip("/\\"), maxsplit=1)[0]
    return bool(colon and authority.rpartition("@")[0])


def header_value_ok(value: str) -> bool:
    """Whether a header can carry ``value``: visible ASCII, spaces and tabs, and Latin-1
    (http.client sends values as Latin-1; a line break would end the header)."""
    return all(ch == "\t" or " " <= ch <= "~" or "\x80" <= ch <= "\xff" for ch in value)


UNSENDABLE = "has a character a header cannot carry (a line break, a control character, or one above U+00FF)"


class Transport:
    def __init__(self, url: str, api_key: Optional[str]) -> None:
        # Neither is ever quoted: both may be secrets. A URL's password would otherwise be
        # printed in every network error's message.
        if has_credentials(url):
            raise ValueError("the service URL has a user name or password in it: pass an API key (api_key) instead")
        if api_key and not header_value_ok(api_key):
            raise ValueError("the API key " + UNSENDABLE)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = "" if "@" in url else ", got %r" % url
            raise ValueError("the leasehold URL must be http:// or https:// with a host" + shown)
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._api_key = api_key
        self._ssl = ssl.create_default_context() if self._https else None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def open(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        json_body: Any = None,
        headers: Optional[Dict[str, str]] = None,
        abort: Optional[Abort] = None,
    ) -> Exchange:
        """Sends a request and returns it with its response, body unread. ``timeout`` bounds
        the connect and each read (the socket's timeout, which the caller may change)."""
        for name, value in (headers or {}).items():
            # A caller's value (an Idempotency-Key) that no request can carry: said here, by its
            # name only, before anything is sent, rather than as an error an acquire would retry.
            if not header_value_ok(value):
                raise ValueError("%s %s" % (name, UNSENDABLE))
        h = {"Accept": "application/json"}
        if self._api_key:
            h["Authorization"] = "Bearer " + self._api_key
        h.update(headers or {})
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            h["Content-Type"] = "application/json"
        conn = self._connection(max(0.001, timeout))
        sock: Optional[socket.socket] = None
        try:
            conn.connect()
            sock = conn.sock
            if abort is not None:
                abort.enter(sock)
            conn.request(method, self._base + path, body=data, headers=h)
            return Exchange(conn, sock, conn.getresponse(), abort)
        except BaseException as err:
            conn.close()
            if abort is not None and sock is not None:
                abort.leave(sock)
            raise _no_answer(method, path, self.url, timeout, err, abort) from None

    def call(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        json_body: Any = None,
        headers: Optional[Dict[str, str]] = None,
        abort: Optional[Abort] = None,
        free: bool = False,
    ) -> Answer:
        """One request and its whole answer. A 4xx/5xx raises its problem's exception, except
        (with ``free``) a 404 ``lock-not-found``, which is an answer: nobody holds it."""
        ex = self.open(method, path, timeout=timeout, json_body=json_body, headers=headers, abort=abort)
        res = ex.response
        try:
            text = res.read()
        except BaseException as err:
            raise _no_answer(method, path, self.url, timeout, err, abort) from None
        finally:
            ex.close()
        body = _parse_json(text)
        if 200 <= res.status < 300:
            if res.status != 204 and body is None:
                raise InvalidResponse("%s %s: %d without a JSON body" % (method, path, res.status), status=res.status)
            return Answer(res.status, res.headers, body)
        if free and res.status == 404 and isinstance(body, dict) and body.get("code") == "lock-not-found":
            return Answer(res.status, res.headers, body)
        raise problem_error(method, path, res.status, res.reason, res.headers, body)


def _no_answer(
    method: str, path: str, url: str, timeout: float, err: BaseException, abort: Optional[Abort]
) -> BaseException:
    if isinstance(err, LeaseholdError) or not isinstance(err, (OSError, http.client.HTTPException)):
        return err
    if abort is not None and abort.aborted:
        return Cancelled("%s %s: abandoned" % (method, path))
    if isinstance(err, socket.timeout):
        return RequestTimeout("%s %s: no answer from %s within %g s" % (method, path, url, timeout))
    return NetworkError("%s %s: %s did not answer: %s" % (method, path, url, _describe(err)))


def _describe(err: BaseException) -> str:
    text = str(err)
    return "%s (%s)" % (type(err).__name__, text) if text else type(err).__name__


def _parse_json(data: bytes) -> Any:
    if not data.strip():
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:
        return None
