"""What no request can carry is refused before anything is sent, and never quoted: a
service URL with a user name or password (it would be printed in every network error's
message), an API key or an Idempotency-Key with a character a header cannot carry (a line
break would inject a header; an acquire would retry the failure for 10 s)."""

from __future__ import annotations

import os
import socketserver
import threading
import time
import unittest
from typing import List
from unittest import mock

from leasehold import Client

SECRET = "s3cret-Zq9"


class _Counting(socketserver.BaseRequestHandler):
    """Counts connections, and answers none: a test that passes never gets here."""

    def handle(self) -> None:
        self.server.connections.append(self.client_address)  # type: ignore[attr-defined]


class _Stub(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Counting)
        self.connections: List[object] = []
        self.url = "http://127.0.0.1:%d" % self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class Refused(unittest.TestCase):
    def setUp(self) -> None:
        self.stub = _Stub()
        self.addCleanup(self.stub.close)

    def assertNotQuoted(self, err: BaseException, *secrets: str) -> None:  # noqa: N802 (unittest's naming)
        for secret in secrets:
            self.assertNotIn(secret, str(err))
            self.assertNotIn(secret, repr(err))

    def test_a_url_with_a_user_name_or_password_is_refused_without_quoting_it(self) -> None:
        port = self.stub.server_address[1]
        for url in [
            "http://user:%s@127.0.0.1:%d" % (SECRET, port),
            "http://%s@127.0.0.1:%d" % (SECRET, port),
            "http://:%s@127.0.0.1:%d/base" % (SECRET, port),
            "HTTPS://user:%s@leasehold.example" % SECRET,
            # No "//": urlsplit sees a path, a browser (and the TypeScript client) a user and password.
            "http:user:%s@127.0.0.1:%d" % (SECRET, port),
            "http:/user:%s@127.0.0.1:%d" % (SECRET, port),
            "ftp://user:%s@leasehold.example" % SECRET,
        ]:
            with self.subTest(url=url):
                with self.assertRaises(ValueError) as caught:
                    Client(url, api_key="k")
                self.assertIn("user name or password", str(caught.exception))
                self.assertIn("api_key", str(caught.exception))
                self.assertNotQuoted(caught.exception, SECRET, url)
        self.assertEqual(self.stub.connections, [])

    def test_leasehold_url_with_credentials_is_refused_too(self) -> None:
        url = "http://user:%s@127.0.0.1:%d" % (SECRET, self.stub.server_address[1])
        with mock.patch.dict(os.environ, {"LEASEHOLD_URL": url}):
            with self.assertRaises(ValueError) as caught:
                Client()
        self.assertNotQuoted(caught.exception, SECRET)

    def test_an_at_sign_after_the_host_is_no_credential(self) -> None:
        url = self.stub.url + "/base@x?y=a:b@c"
        self.assertEqual(repr(Client(url, api_key="k")), "Client(%r)" % url)

    def test_an_api_key_a_header_cannot_carry_is_refused_without_quoting_it(self) -> None:
        for key in [SECRET + "\r\nX-Injected: 1", SECRET + "\n", SECRET + "\x00", SECRET + "\x7f", SECRET + "\u20ac"]:
            with self.subTest(key=key):
                with self.assertRaises(ValueError) as caught:
                    Client(self.stub.url, api_key=key)
                self.assertIn("API key", str(caught.exception))
                self.assertNotQuoted(caught.exception, SECRET)
        with mock.patch.dict(os.environ, {"LEASEHOLD_API_KEY": SECRET + "\n"}):
            with self.assertRaises(ValueError) as caught:
                Client(self.stub.url)
        self.assertNotQuoted(caught.exception, SECRET)
        self.assertEqual(self.stub.connections, [])

    def test_an_api_key_of_latin_1_and_tabs_is_accepted(self) -> None:
        Client(self.stub.url, api_key="key\twith caf\u00e9")

    def test_an_idempotency_key_a_header_cannot_carry_fails_at_the_call_sends_nothing_and_is_not_retried(self) -> None:
        client = Client(self.stub.url, api_key="k")
        for key in [SECRET + "\r\nX-Injected: 1", SECRET + "\u20ac", SECRET + "\x01"]:
            with self.subTest(key=key):
                started = time.monotonic()
                with self.assertRaises(ValueError) as caught:
                    client.acquire("job", ttl=5, idempotency_key=key)
                # A retried failure would take the default retry_for (10 s).
                self.assertLess(time.monotonic() - started, 1.0)
                self.assertIn("Idempotency-Key", str(caught.exception))
                self.assertNotQuoted(caught.exception, SECRET)
                with self.assertRaises(ValueError) as caught:
                    with client.lock("job", ttl=5, idempotency_key=key):
                        self.fail("the block must not run")
                self.assertNotQuoted(caught.exception, SECRET)
        self.assertEqual(self.stub.connections, [])

    def test_an_event_id_a_header_cannot_carry_is_refused_before_connecting(self) -> None:
        with self.assertRaises(ValueError) as caught:
            with Client(self.stub.url).observe("job", after=SECRET + "\n") as events:
                next(iter(events))
        self.assertIn("Last-Event-ID", str(caught.exception))
        self.assertNotQuoted(caught.exception, SECRET)
        self.assertEqual(self.stub.connections, [])


if __name__ == "__main__":
    unittest.main()
