"""The scenarios every leasehold client is tested against (docs/clients.md): grant,
contention, lost lock, and retry after a dropped response; against the real service."""

from __future__ import annotations

import re
import threading
import time
import unittest

from leasehold import Client, LockExpired, LockHeld, LockLost
from tests.support import Proxy, Seen, service, unique, until


def setUpModule() -> None:
    global svc, client
    svc = service()
    client = Client(svc.url, api_key=svc.api_key)


class Grant(unittest.TestCase):
    def test_acquire_renew_release(self) -> None:
        name = unique("grant")
        grant = client.acquire(name, ttl=30, owner="py-host")
        self.assertEqual(grant.name, name)
        self.assertIsInstance(grant.token, int)
        self.assertRegex(grant.lease, r"^[0-9a-f]{16,64}$")
        self.assertEqual(grant.ttl, 30)
        self.assertEqual(grant.owner, "py-host")
        self.assertNotIn(grant.lease, repr(grant), "the lease is a secret: repr leaves it out")
        info = client.inspect(name)
        assert info is not None
        self.assertEqual((info.token, info.owner), (grant.token, "py-host"))
        renewed = client.renew(name, grant.lease)
        self.assertEqual(renewed.token, grant.token, "a renew keeps the fencing token")
        client.release(name, grant.lease)
        self.assertIsNone(client.inspect(name))
        with self.assertRaises(LockLost) as lost:
            client.release(name, grant.lease)
        self.assertEqual((lost.exception.code, lost.exception.status), ("lock-lost", 410))

    def test_the_with_block_renews_every_third_of_the_ttl_and_releases_on_exit(self) -> None:
        name = unique("with")
        with client.lock(name, ttl=3, owner="py-with") as held:
            self.assertEqual(client.inspect(name).token, held.token)  # type: ignore[union-attr]
            token = held.token
            # ttl/3 = 1 s: two renewals within about 2 s; the lock stays valid throughout.
            until(lambda: held.renewals >= 2, "two renewals", timeout=8)
            self.assertFalse(held.lost.is_set())
            held.check()
            self.assertEqual(held.token, token)
            self.assertGreater(held.remaining(), 0)
            self.assertLessEqual(held.valid_until, time.time() + 3)
        self.assertIsNone(client.inspect(name), "released on leaving the block")
        self.assertIn("not held", repr(held))

    def test_a_body_that_raises_still_releases(self) -> None:
        name = unique("raises")
        with self.assertRaises(ZeroDivisionError):
            with client.lock(name, ttl=30):
                1 / 0
        self.assertIsNone(client.inspect(name))


class Contention(unittest.TestCase):
    def test_a_held_lock_is_refused_with_its_holder(self) -> None:
        name = unique("contention")
        first = client.acquire(name, ttl=30, owner="first")
        try:
            with self.assertRaises(LockHeld) as held:
                client.acquire(name, owner="second")
            err = held.exception
            self.assertEqual((err.code, err.status), ("lock-held", 409))
            self.assertEqual(err.holder["owner"], "first")  # type: ignore[index]
            self.assertEqual(err.holder["token"], first.token)  # type: ignore[index]
            self.assertGreaterEqual(err.retry_after, 1)  # type: ignore[arg-type]
            ran = []
            with self.assertRaises(LockHeld):
                with client.lock(name, ttl=30):
                    ran.append(True)
            self.assertEqual(ran, [], "the block does not run without the lock")
        finally:
            client.release(name, first.lease)

    def test_a_waiter_gets_the_lock_when_the_holder_releases(self) -> None:
        name = unique("waiter")
        first = client.acquire(name, ttl=30)
        got = []

        def wait_for_it() -> None:
            with client.lock(name, ttl=30, wait=20) as held:
                got.append(held.token)

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        until(lambda: (client.inspect(name) or first).waiters == 1, "the waiter in line")  # type: ignore[union-attr]
        client.release(name, first.lease)
        waiter.join(20)
        self.assertEqual(len(got), 1)
        self.assertGreater(got[0], first.token, "fencing tokens grow with every grant")


class LostLock(unittest.TestCase):
    def test_a_force_release_is_seen_by_the_body(self) -> None:
        name = unique("forced")
        admin = Client(svc.url, api_key=svc.admin_key)
        heard = []
        with client.lock(name, ttl=3, on_lost=heard.append) as held:
            admin.force_release(name)
            # The next renew (within ttl/3 = 1 s) is answered 410.
            self.assertTrue(held.lost.wait(10), "lost is set")
            with self.assertRaises(LockLost) as lost:
                held.check()
            self.assertEqual(lost.exception.code, "lock-lost")
            self.assertNotIsInstance(lost.exception, LockExpired)
            self.assertIs(held.reason, lost.exception)
            self.assertEqual(heard, [held.reason], "on_lost was called once, with the reason")
            self.assertEqual(held.remaining(), 0)
            # Someone else takes it meanwhile: leaving the block must not touch their grant.
            other = client.acquire(name, ttl=30)
        self.assertEqual(client.inspect(name).token, other.token)  # type: ignore[union-attr]
        client.release(name, other.lease)

    def test_renewals_that_get_no_answer_end_at_the_clients_own_deadline(self) -> None:
        name = unique("deadline")
        blocked = threading.Event()

        def rule(seen: Seen) -> str:
            return "blackhole" if blocked.is_set() and seen.path.endswith("/renew") else "forward"

        with Proxy(svc.url, rule) as proxy:
            cut_off = Client(proxy.url, api_key=svc.api_key)
            sent = time.monotonic()
            with cut_off.lock(name, ttl=3) as held:
                blocked.set()
                # The deadline is the acquire's send time + ttl - margin (3 - 0.3 s): it lies
                # between the time before the acquire was sent and the time it returned.
                now = time.monotonic()
                self.assertLessEqual(held.remaining(), 2.7)
                self.assertGreaterEqual(held.remaining(), sent + 2.7 - now - 0.01)
                self.assertTrue(held.lost.wait(10))
                lost_at = time.monotonic()
                with self.assertRaises(LockExpired) as lost:
                    held.check()
                self.assertEqual(lost.exception.code, "lock-expired")
                self.assertIsInstance(lost.exception, LockLost)
                self.assertTrue(proxy.requests("PUT"), "a renew was sent and swallowed")
                self.assertEqual(held.remaining(), 0)
        # Never before the deadline; soon after it (a generous bound for a busy machine).
        self.assertGreaterEqual(lost_at - sent, 2.7)
        self.assertLess(lost_at - now, 2.7 + 1.5)


class RetryAfterDroppedResponse(unittest.TestCase):
    def drop_first_acquire(self, seen: Seen) -> str:
        if seen.method == "POST" and not self.dropped:
            self.dropped.append(seen)
            return "drop-response"
        return "forward"

    def setUp(self) -> None:
        self.dropped: list = []

    def assert_replayed(self, proxy: Proxy) -> None:
        posts = proxy.requests("POST")
        self.assertEqual([(p.action, p.status) for p in posts], [("drop-response", 201), ("forward", 200)])
        key = posts[0].headers.get("idempotency-key")
        self.assertRegex(key or "", re.compile(r"^[0-9a-f-]{36}$"))
        self.assertEqual(posts[1].headers.get("idempotency-key"), key, "one Idempotency-Key for every attempt")

    def test_acquire_retries_with_the_same_idempotency_key_and_gets_the_same_grant(self) -> None:
        name = unique("dropped")
        with Proxy(svc.url, self.drop_first_acquire) as proxy:
            grant = Client(proxy.url, api_key=svc.api_key).acquire(name, ttl=30, owner="retry")
            self.assert_replayed(proxy)
        self.assertEqual(client.inspect(name).token, grant.token)  # type: ignore[union-attr]
        client.release(name, grant.lease)  # the replayed lease is the holder's

    def test_the_with_block_holds_the_replayed_grant_and_releases_it(self) -> None:
        name = unique("dropped-with")
        with Proxy(svc.url, self.drop_first_acquire) as proxy:
            with Client(proxy.url, api_key=svc.api_key).lock(name, ttl=30) as held:
                self.assert_replayed(proxy)
                self.assertEqual(client.inspect(name).token, held.token)  # type: ignore[union-attr]
                held.check()
            # Released with the lease in a POST's body, as every leasehold client does.
            last = proxy.seen[-1]
            self.assertEqual((last.method, last.path, last.status), ("POST", "/locks/%s/release" % name, 204))
        self.assertIsNone(client.inspect(name))


if __name__ == "__main__":
    unittest.main()
