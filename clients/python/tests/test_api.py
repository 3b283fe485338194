"""The rest of the API against the real service: tickets, waiting in line, semaphores,
leader election, blocking reads, listings and the error classes."""

from __future__ import annotations

import threading
import time
import unittest

from leasehold import (
    Client,
    Forbidden,
    Grant,
    InvalidRequest,
    LeaseholdError,
    LimitMismatch,
    LockHeld,
    LockInfo,
    LockLost,
    NetworkError,
    SemaphoreInfo,
    Ticket,
    Unauthorized,
)
from tests.support import Proxy, Seen, service, unique, until


def setUpModule() -> None:
    global svc, client
    svc = service()
    client = Client(svc.url, api_key=svc.api_key)


class Holding(unittest.TestCase):
    def test_leaving_the_block_abandons_a_renew_that_hangs_and_releases(self) -> None:
        name = unique("hanging-renew")

        def rule(seen: Seen) -> str:
            return "blackhole" if seen.path.endswith("/renew") else "forward"

        with Proxy(svc.url, rule) as proxy:
            with Client(proxy.url, api_key=svc.api_key).lock(name, ttl=6) as held:
                # The renew at ttl/3 = 2 s hangs; its own timeout would run to the deadline (5.4 s).
                until(lambda: bool(proxy.requests("PUT")), "a renew in flight")
                leaving = time.monotonic()
            left = time.monotonic() - leaving
        self.assertLess(left, 2.0, "the hanging renew was abandoned, not waited for")
        self.assertFalse(held.lost.is_set())
        self.assertIsNone(client.inspect(name), "released")

    def test_release_false_leaves_the_lock_to_expire(self) -> None:
        name = unique("no-release")
        with client.lock(name, ttl=30, release=False) as held:
            pass
        info = client.inspect(name)
        self.assertEqual(info.token, held.token)  # type: ignore[union-attr]
        client.release(name, held.lease)


class Tickets(unittest.TestCase):
    def test_a_ticket_keeps_a_place_in_line_until_its_turn(self) -> None:
        name = unique("ticket")
        holder = client.acquire(name, ttl=30)
        place = client.acquire(name, queue=True, ticket_ttl=60, ttl=30)
        self.assertIsInstance(place, Ticket)
        self.assertEqual(place.position, 0)
        self.assertNotIn(place.ticket, repr(place), "the ticket is a secret: repr leaves it out")
        behind = client.acquire(name, queue=True)
        self.assertEqual(behind.position, 1)
        client.leave(name, behind.ticket)
        again = client.redeem(name, place.ticket)
        self.assertIsInstance(again, Ticket, "still held: still in line")
        client.release(name, holder.lease)
        grant = client.redeem(name, place.ticket, wait=5)
        self.assertIsInstance(grant, Grant)
        self.assertGreater(grant.token, holder.token)
        self.assertEqual(client.redeem(name, place.ticket), grant, "the same ticket again: the same grant")
        client.release(name, grant.lease)
        with self.assertRaises(LockLost):
            client.redeem(name, place.ticket)

    def test_a_free_lock_is_granted_at_once_even_when_queueing(self) -> None:
        name = unique("ticket-free")
        grant = client.acquire(name, queue=True)
        self.assertIsInstance(grant, Grant)
        client.release(name, grant.lease)

    def test_lock_with_queue_waits_in_line_for_as_long_as_it_takes(self) -> None:
        name = unique("queue")
        holder = client.acquire(name, ttl=30)
        positions: list = []
        got: list = []

        def in_line() -> None:
            # Polls of 1 s: the place is kept across several requests.
            with client.lock(name, ttl=30, queue=True, poll_wait=1, on_queued=positions.append) as held:
                got.append(held.token)

        waiter = threading.Thread(target=in_line)
        waiter.start()
        until(lambda: len(positions) >= 3, "three answers in line")
        self.assertEqual(set(positions), {0})
        client.release(name, holder.lease)
        waiter.join(10)
        self.assertEqual(len(got), 1)
        self.assertGreater(got[0], holder.token)
        self.assertIsNone(client.inspect(name))

    def test_lock_with_queue_gives_up_after_wait_and_leaves_the_line(self) -> None:
        name = unique("queue-gives-up")
        holder = client.acquire(name, ttl=30)
        try:
            with self.assertRaises(LockHeld):
                with client.lock(name, queue=True, wait=1, poll_wait=0.5):
                    self.fail("not granted")
            self.assertEqual(client.inspect(name).waiters, 0, "left the line")  # type: ignore[union-attr]
        finally:
            client.release(name, holder.lease)


class Semaphores(unittest.TestCase):
    def test_at_most_limit_holders_each_with_its_own_token(self) -> None:
        name = unique("sem")
        sem = client.semaphore(name, 2)
        a = sem.acquire(owner="a", ttl=30)
        b = sem.acquire(owner="b", ttl=30)
        self.assertEqual((a.limit, b.limit), (2, 2))
        self.assertGreater(b.token, a.token)
        with self.assertRaises(LockHeld):
            sem.acquire()
        with self.assertRaises(LimitMismatch) as mismatch:
            client.semaphore(name, 5).acquire()
        self.assertEqual(mismatch.exception.limit, 2)
        info = client.semaphore(name).inspect()
        self.assertIsInstance(info, SemaphoreInfo)
        assert info is not None
        self.assertEqual([(h.token, h.owner) for h in info.holders], [(a.token, "a"), (b.token, "b")])
        self.assertEqual(sem.renew(a.lease).token, a.token)
        sem.release(a.lease)
        with sem.permit(ttl=30) as permit:
            self.assertGreater(permit.token, b.token)
            self.assertEqual(permit.grant.limit, 2)
            self.assertIn(name, [s.name for s in client.list_semaphores(prefix=name).items])
        client.semaphore(name).release(b.lease)
        self.assertIsNone(sem.inspect())

    def test_acquiring_needs_the_limit(self) -> None:
        with self.assertRaises(TypeError):
            client.semaphore(unique("sem-nolimit")).acquire()


class Leaders(unittest.TestCase):
    def test_campaign_elects_one_leader_at_a_time_and_publishes_its_value(self) -> None:
        name = unique("leader")
        second_elected = threading.Event()
        terms: list = []

        def second() -> None:
            with client.campaign(name, "10.0.0.8", ttl=30, wait=1) as leader:
                terms.append((leader.token, leader.value))
                second_elected.set()

        with client.campaign(name, "10.0.0.7", ttl=30) as first:
            self.assertEqual(client.inspect(name).value, "10.0.0.7")  # type: ignore[union-attr]
            first.proclaim("10.0.0.7:9090")
            self.assertEqual(first.value, "10.0.0.7:9090")
            self.assertEqual(client.inspect(name).value, "10.0.0.7:9090")  # type: ignore[union-attr]
            campaigner = threading.Thread(target=second)
            campaigner.start()
            until(lambda: (client.inspect(name) or first).waiters == 1, "the second campaigner in line")  # type: ignore[union-attr]
            self.assertFalse(second_elected.is_set())
        # Resigned on leaving the block: the second is elected.
        self.assertTrue(second_elected.wait(10))
        campaigner.join(10)
        self.assertEqual(len(terms), 1)
        self.assertGreater(terms[0][0], first.token, "a new leader's epoch is larger")
        self.assertEqual(terms[0][1], "10.0.0.8")

    def test_proclaim_after_losing_the_leadership_raises(self) -> None:
        name = unique("leader-lost")
        admin = Client(svc.url, api_key=svc.admin_key)
        with client.campaign(name, "a", ttl=3) as leader:
            admin.force_release(name)
            self.assertTrue(leader.lost.wait(10))
            with self.assertRaises(LockLost):
                leader.proclaim("b")


class Reads(unittest.TestCase):
    def test_a_blocking_read_answers_at_the_next_change(self) -> None:
        name = unique("blocking")
        free = client.inspect_at(name)
        self.assertIsNone(free.info)
        answers: list = []
        reader = threading.Thread(target=lambda: answers.append(client.inspect_at(name, index=free.index, wait=20)))
        started = time.monotonic()
        reader.start()
        grant = client.acquire(name, ttl=30, value="v1")
        reader.join(20)
        self.assertLess(time.monotonic() - started, 15, "answered at the change, not after wait")
        (changed,) = answers
        self.assertIsInstance(changed.info, LockInfo)
        self.assertEqual((changed.info.token, changed.info.value), (grant.token, "v1"))
        self.assertGreater(changed.index, free.index)
        # Unchanged: answers after `wait` with the same state.
        started = time.monotonic()
        same = client.inspect_at(name, index=changed.index, wait=0.5)
        self.assertGreaterEqual(time.monotonic() - started, 0.4)
        self.assertEqual(same.info.token, grant.token)  # type: ignore[union-attr]
        client.release(name, grant.lease)
        gone = client.inspect_at(name, index=same.index, wait=20)
        self.assertIsNone(gone.info)
        self.assertGreater(gone.index, same.index)

    def test_list_pages_through_held_locks(self) -> None:
        prefix = unique("list") + ":"
        grants = [client.acquire(prefix + str(i), ttl=30) for i in range(3)]
        first = client.list(prefix=prefix, limit=2)
        self.assertEqual([i.name for i in first.items], [prefix + "0", prefix + "1"])
        self.assertIsNotNone(first.cursor)
        rest = client.list(prefix=prefix, limit=2, cursor=first.cursor)
        self.assertEqual([i.name for i in rest.items], [prefix + "2"])
        self.assertIsNone(rest.cursor)
        for i, g in enumerate(grants):
            client.release(prefix + str(i), g.lease)


class Errors(unittest.TestCase):
    def test_each_problem_code_has_its_exception(self) -> None:
        with self.assertRaises(InvalidRequest) as bad:
            client.acquire(unique("bad"), ttl=-5)
        self.assertEqual(bad.exception.status, 400)
        self.assertEqual(bad.exception.problem["errors"][0]["field"], "ttl")  # type: ignore[index]
        self.assertFalse(bad.exception.transient)
        if svc.api_key:
            with self.assertRaises(Unauthorized):
                Client(svc.url, api_key="not-a-key").inspect(unique("unauth"))
            with self.assertRaises(Forbidden):
                client.inspect("elsewhere:lock")

    def test_a_name_outside_the_alphabet_is_the_services_400_not_a_misrouted_url(self) -> None:
        with self.assertRaises(InvalidRequest):
            client.acquire("py:a/b c")

    def test_no_answer_is_a_transient_network_error_after_the_retries(self) -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        started = time.monotonic()
        with self.assertRaises(NetworkError) as err:
            Client("http://127.0.0.1:%d" % port).acquire(unique("nobody"), retry_for=0.5)
        self.assertTrue(err.exception.transient)
        self.assertEqual(err.exception.status, 0)
        self.assertIsInstance(err.exception, LeaseholdError)
        self.assertLess(time.monotonic() - started, 5)


if __name__ == "__main__":
    unittest.main()
