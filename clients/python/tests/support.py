"""What the tests share: the service they run against, unique names, waiting for a
condition, and a TCP proxy that can drop or hold answers."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import urllib.parse
from typing import Callable, Dict, List, Optional, Set, Tuple

_names = itertools.count()


class Service:
    def __init__(self, url: str, api_key: Optional[str], admin_key: Optional[str]) -> None:
        self.url = url
        self.api_key = api_key
        self._admin_key = admin_key

    @property
    def admin_key(self) -> str:
        if not self._admin_key:
            raise RuntimeError(
                "LEASEHOLD_ADMIN_API_KEY is not set: the lost-lock test force-releases with an admin API key "
                '(an entry of LEASEHOLD_API_KEYS with "admin": true)'
            )
        return self._admin_key


def service() -> Service:
    """The service under test, from the environment; fails loudly when it is not given."""
    url = os.environ.get("LEASEHOLD_URL")
    if not url:
        raise RuntimeError(
            "LEASEHOLD_URL is not set: these tests run against a real leasehold service. Start one "
            "(npm start; or run `npx vitest run test/clients/python.test.ts`, which starts etcd and the "
            "service and runs these tests) and set LEASEHOLD_URL, plus LEASEHOLD_API_KEY (a key for names "
            "under py:) and LEASEHOLD_ADMIN_API_KEY when auth is on."
        )
    return Service(url, os.environ.get("LEASEHOLD_API_KEY") or None, os.environ.get("LEASEHOLD_ADMIN_API_KEY") or None)


def unique(what: str) -> str:
    """A lock name no other test (or earlier run) uses; under py:, which the test key may use."""
    return "py:%s-%d-%d-%d" % (what, os.getpid(), int(time.time() * 1000) % 10**8, next(_names))


def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Waits until ``predicate()`` holds, checking every 20 ms; fails after ``timeout`` s."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out after %g s waiting for %s" % (timeout, what))
        time.sleep(0.02)


class Seen:
    """One request the proxy saw: what the rule decided, and the service's status (None
    when it was never forwarded)."""

    def __init__(self, method: str, path: str, headers: Dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.action = "forward"
        self.status: Optional[int] = None

    def __repr__(self) -> str:
        return "<%s %s %s → %s>" % (self.method, self.path, self.action, self.status)


class Proxy:
    """A TCP proxy in front of the service that reads one HTTP request per connection (the
    client opens a connection per call) and lets ``rule(seen)`` decide what happens to it:

    - ``"forward"``: forwarded, and the answer sent back;
    - ``"drop-response"``: forwarded, the answer read and thrown away, the client's connection closed
      (a response lost on the way back: the service did the work);
    - ``"blackhole"``: never forwarded; the connection stays open and silent until the client
      gives up (a network that swallows requests).
    """

    def __init__(self, upstream: str, rule: Optional[Callable[[Seen], str]] = None) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self._upstream: Tuple[str, int] = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rule = rule or (lambda seen: "forward")
        self.seen: List[Seen] = []
        self._lock = threading.Lock()
        self._open: Set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = "http://127.0.0.1:%d" % self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def requests(self, method: str) -> List[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method]

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self.cut()
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _track(self, s: socket.socket, on: bool) -> None:
        with self._lock:
            if on:
                self._open.add(s)
            else:
                self._open.discard(s)

    def cut(self) -> None:
        """Breaks every connection open now (a network failure mid-stream)."""
        with self._lock:
            socks = list(self._open)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _serve(self, client: socket.socket) -> None:
        self._track(client, True)
        try:
            request = _read_request(client)
            if request is None:
                return
            head, body = request
            lines = head.split("\r\n")
            method, path = lines[0].split(" ")[:2]
            seen = Seen(method, path, _headers(lines[1:]))
            seen.action = self.rule(seen)
            with self._lock:
                self.seen.append(seen)
            if seen.action == "blackhole":
                # Silent until the client hangs up (recv answers b"") or the proxy closes.
                while client.recv(4096):
                    pass
                return
            # One request per connection: the service closes it after the answer, so the
            # answer (an event stream too) is relayed until the end of the connection.
            forwarded = [lines[0]] + [h for h in lines[1:] if not h.lower().startswith("connection:")]
            forwarded.append("Connection: close")
            upstream = socket.create_connection(self._upstream, timeout=60)
            self._track(upstream, True)
            try:
                upstream.sendall(("\r\n".join(forwarded) + "\r\n\r\n").encode("latin-1") + body)
                while True:
                    chunk = upstream.recv(65536)
                    if not chunk:
                        break
                    if seen.status is None:
                        seen.status = int(chunk.split(b" ", 2)[1])
                    if seen.action == "forward":
                        client.sendall(chunk)
            finally:
                self._track(upstream, False)
                upstream.close()
        except OSError:
            pass
        finally:
            self._track(client, False)
            client.close()


def _read_request(s: socket.socket) -> Optional[Tuple[str, bytes]]:
    """One HTTP request from ``s`` (a body framed by Content-Length, as the client sends
    them): its head as text and its body; None when the peer closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    want = int(_headers(text.split("\r\n")[1:]).get("content-length", "0"))
    while len(body) < want:
        chunk = s.recv(65536)
        if not chunk:
            return None
        body += chunk
    return text, body


def _headers(lines: List[str]) -> Dict[str, str]:
    out = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name:
            out[name.strip().lower()] = value.strip()
    return out
