"""The fencing calls against the real service: the fence check, guarded state (on the
client, on semaphores and on a held lock) and lock-delay."""

from __future__ import annotations

import unittest

from leasehold import Client, InvalidRequest, LockHeld, LockLost, PayloadTooLarge, State
from tests.support import Proxy, service, unique


def setUpModule() -> None:
    global svc, client, admin
    svc = service()
    client = Client(svc.url, api_key=svc.api_key)
    admin = Client(svc.url, api_key=svc.admin_key)


class Fence(unittest.TestCase):
    def test_true_for_the_holders_token_false_once_its_grant_ended_and_for_another(self) -> None:
        name = unique("fence")
        a = client.acquire(name, ttl=30)
        self.assertIs(client.fence(name, a.token), True)
        client.release(name, a.lease)
        self.assertIs(client.fence(name, a.token), False)
        b = client.acquire(name, ttl=30)
        self.assertIs(client.fence(name, a.token), False)
        self.assertIs(client.fence(name, b.token), True)
        self.assertIs(client.fence(name, b.token + 1), False)
        # Not being able to ask is a failure, never an answer.
        with self.assertRaises(InvalidRequest):
            client.fence(name, -1)
        client.release(name, b.lease)

    def test_a_semaphore_permit(self) -> None:
        sem = client.semaphore(unique("fence-sem"), 2)
        a = sem.acquire(ttl=30)
        self.assertTrue(sem.fence(a.token))
        sem.release(a.lease)
        self.assertFalse(sem.fence(a.token))


class GuardedState(unittest.TestCase):
    def test_written_by_the_holder_kept_after_the_grant_a_stale_lease_refused(self) -> None:
        name = unique("state")
        self.assertIsNone(client.read_state(name))
        a = client.acquire(name, ttl=30)
        written = client.write_state(name, a.lease, "run 1 done")
        self.assertIsInstance(written, State)
        self.assertEqual((written.value, written.token), ("run 1 done", a.token))
        self.assertIsInstance(written.revision, int)
        self.assertTrue(written.updated_at)
        client.release(name, a.lease)
        self.assertEqual(client.read_state(name), written)

        b = client.acquire(name, ttl=30)
        with self.assertRaises(LockLost) as stale:
            client.write_state(name, a.lease, "a, late")
        self.assertEqual(stale.exception.status, 410)
        self.assertNotIn(a.lease, str(stale.exception))
        self.assertEqual(client.read_state(name), written)
        with self.assertRaises(PayloadTooLarge):
            client.write_state(name, b.lease, "x" * 65_537)
        later = client.write_state(name, b.lease, "run 2 done")
        self.assertEqual(later.token, b.token)
        self.assertGreater(later.revision, written.revision)
        client.release(name, b.lease)

    def test_any_current_permit_writes_a_semaphores_one_state(self) -> None:
        sem = client.semaphore(unique("state-sem"), 2)
        a = sem.acquire(ttl=30)
        self.assertIsNone(sem.read_state())
        self.assertEqual(sem.write_state(a.lease, "from a").token, a.token)
        with sem.permit(ttl=30) as p:
            self.assertTrue(p.fence())
            self.assertEqual(p.write_state("from the held permit").token, p.token)
        sem.release(a.lease)
        with self.assertRaises(LockLost):
            sem.write_state(a.lease, "a again")
        self.assertEqual(sem.read_state().value, "from the held permit")  # type: ignore[union-attr]
        self.assertIsNone(client.read_state(sem.name), "a lock of the same name has a state of its own")


class HeldLock(unittest.TestCase):
    def test_the_held_lock_fences_writes_and_reads(self) -> None:
        name = unique("held-state")
        with client.lock(name, ttl=30) as held:
            self.assertTrue(held.fence())
            w = held.write_state("checkpoint 1")
            self.assertEqual((w.value, w.token), ("checkpoint 1", held.token))
            self.assertEqual(held.read_state(), w)
            self.assertFalse(held.lost.is_set())
        self.assertEqual(client.read_state(name), w)

    def test_a_guarded_write_refused_with_410_loses_the_lock_and_later_ones_are_not_sent(self) -> None:
        name = unique("held-lost")
        with Proxy(svc.url) as proxy:
            with Client(proxy.url, api_key=svc.api_key).lock(name, ttl=30) as held:
                admin.force_release(name)
                with self.assertRaises(LockLost) as refused:
                    held.write_state("too late")
                self.assertEqual(refused.exception.status, 410)
                self.assertTrue(held.lost.is_set())
                self.assertIs(held.reason, refused.exception)
                sent = len([s for s in proxy.requests("PUT") if s.path.endswith("/state")])
                with self.assertRaises(LockLost):
                    held.write_state("later still")
                self.assertEqual(len([s for s in proxy.requests("PUT") if s.path.endswith("/state")]), sent)
                self.assertFalse(held.fence())
        self.assertIsNone(client.read_state(name))

    def test_a_stale_fence_check_loses_the_lock(self) -> None:
        name = unique("held-fence")
        with client.lock(name, ttl=30) as held:
            admin.force_release(name)
            self.assertFalse(held.fence())
            self.assertTrue(held.lost.is_set())
            with self.assertRaises(LockLost):
                held.check()


class LockDelay(unittest.TestCase):
    def assert_delayed(self, name: str) -> None:
        with self.assertRaises(LockHeld) as held:
            client.acquire(name)
        e = held.exception
        self.assertEqual(e.reason, "lock-delay")
        self.assertIsNone(e.holder)
        self.assertGreaterEqual(e.retry_after or 0, 1)

    def test_after_a_forced_end_the_lock_is_held_back_then_a_waiter_gets_it(self) -> None:
        name = unique("delay")
        a = client.acquire(name, ttl=30, lock_delay=3)
        admin.force_release(name)
        self.assert_delayed(name)
        with client.lock(name, wait=20) as held:
            self.assertGreater(held.token, a.token)
        # A clean release (the block's) frees the lock at once.
        client.release(name, client.acquire(name).lease)

    def test_the_block_in_line_and_the_campaign_send_it_too(self) -> None:
        queued, elected = unique("delay-queue"), unique("delay-campaign")
        with client.lock(queued, queue=True, lock_delay=5):
            admin.force_release(queued)
        self.assert_delayed(queued)
        with client.campaign(elected, "v", lock_delay=5):
            admin.force_release(elected)
        self.assert_delayed(elected)


if __name__ == "__main__":
    unittest.main()
