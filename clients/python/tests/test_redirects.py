"""The client never follows a redirect: it would carry a request's body, lease or ticket
included, on to wherever the redirect points. The service itself never redirects."""

from __future__ import annotations

import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List

from leasehold import Client, LeaseholdError, Redirected


class _Redirecting(BaseHTTPRequestHandler):
    sent: List[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length") or 0)
        _Redirecting.sent.append(self.rfile.read(length))
        self.send_response(307)
        self.send_header("location", "http://127.0.0.1:9/elsewhere")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Redirects(unittest.TestCase):
    def setUp(self) -> None:
        _Redirecting.sent = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.client = Client("http://127.0.0.1:%d" % self.server.server_address[1])

    def tearDown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def test_a_release_answered_with_a_redirect_is_redirected_and_not_retried(self) -> None:
        with self.assertRaises(Redirected) as caught:
            self.client.release("job", "00112233445566778899aabbccddeeff")
        err = caught.exception
        self.assertIsInstance(err, LeaseholdError)
        self.assertEqual(err.code, "redirected")
        self.assertEqual(err.status, 307)
        self.assertIn("point the client at the service itself", str(err))
        self.assertNotIn("00112233445566778899aabbccddeeff", str(err))
        self.assertEqual(len(_Redirecting.sent), 1)

    def test_an_acquire_answered_with_a_redirect_fails_at_once(self) -> None:
        with self.assertRaises(Redirected):
            self.client.acquire("job", ttl=5)
        self.assertEqual(len(_Redirecting.sent), 1)


if __name__ == "__main__":
    unittest.main()
