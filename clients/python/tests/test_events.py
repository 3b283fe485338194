"""The event stream: the SSE parser on its own, and ``observe`` against the real service."""

from __future__ import annotations

import threading
import unittest
from typing import List

from leasehold import Client, Event
from leasehold.events import SseEvent, SseParser
from tests.support import Proxy, service, unique


class Parser(unittest.TestCase):
    def parse(self, chunks: List[str]) -> List[SseEvent]:
        out: List[SseEvent] = []
        parser = SseParser("", out.append)
        for c in chunks:
            parser.push(c)
        return out

    def test_lines_split_anywhere_and_every_line_ending(self) -> None:
        text = "\ufeffevent: held\r\ndata: {\"a\":1}\r\nid: 7\r\n\r\n: keep-alive\n\nevent: free\rdata: x\rdata: y\r\r"
        whole = self.parse([text])
        for cut in range(1, len(text)):
            self.assertEqual(
                [(e.event, e.data, e.id, e.has_id) for e in self.parse([text[:cut], text[cut:]])],
                [(e.event, e.data, e.id, e.has_id) for e in whole],
                "split at %d" % cut,
            )
        self.assertEqual(
            [(e.event, e.data, e.id, e.has_id) for e in whole],
            [("held", '{"a":1}', "7", True), ("free", "x\ny", "7", False)],
        )

    def test_retry_and_unknown_fields(self) -> None:
        retries: List[int] = []
        out: List[SseEvent] = []
        parser = SseParser("3", out.append, retries.append)
        parser.push("retry: 1500\nfoo: bar\ndata\n\n")
        self.assertEqual(retries, [1500])
        self.assertEqual([(e.event, e.data, e.id) for e in out], [("message", "", "3")])


class Observe(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.svc = service()
        cls.client = Client(cls.svc.url, api_key=cls.svc.api_key)

    def next_event(self, events: object, timeout: float = 10.0) -> Event:
        """The next event, or a failure after ``timeout`` s (the stream is closed then)."""
        got: List[object] = []
        reader = threading.Thread(target=lambda: got.append(next(events, None)))  # type: ignore[call-overload]
        reader.start()
        reader.join(timeout)
        if not got:
            events.close()  # type: ignore[attr-defined]
            reader.join(5)
            self.fail("no event within %g s" % timeout)
        self.assertIsInstance(got[0], Event)
        return got[0]  # type: ignore[return-value]

    def test_held_and_free_events_of_one_lock_then_a_resume_after_an_id(self) -> None:
        name = unique("observe")
        with self.client.observe(name) as events:
            reset = self.next_event(events)
            self.assertEqual((reset.type, reset.reason), ("reset", "start"))
            grant = self.client.acquire(name, ttl=30, owner="o", value="10.0.0.7")
            self.client.acquire(unique("observe-other"), ttl=5)  # another name: filtered out
            held = self.next_event(events)
            self.assertEqual(
                (held.type, held.kind, held.name, held.token, held.owner, held.value, held.ttl),
                ("held", "lock", name, grant.token, "o", "10.0.0.7", 30),
            )
            self.assertEqual(events.last_event_id, held.id)
            self.client.release(name, grant.lease)
            free = self.next_event(events)
            self.assertEqual((free.type, free.name, free.token), ("free", name, grant.token))
            self.assertGreater(free.revision, held.revision)
        with self.client.observe(name, after=held.id) as resumed:
            again = self.next_event(resumed)
            self.assertEqual((again.type, again.id), ("free", free.id), "resumes after the id: nothing lost or repeated")

    def test_a_dropped_connection_resumes_after_the_last_event(self) -> None:
        name = unique("observe-drop")
        with Proxy(self.svc.url) as proxy:
            retries: List[object] = []
            events = Client(proxy.url, api_key=self.svc.api_key).observe(
                name, on_retry=lambda err, delay: retries.append(err)
            )
            with events:
                self.assertEqual(self.next_event(events).type, "reset")
                grant = self.client.acquire(name, ttl=30)
                held = self.next_event(events)
                self.assertEqual(held.type, "held")
                # The stream breaks while the lock is released: the resume must still bring the free.
                proxy.cut()
                self.client.release(name, grant.lease)
                free = self.next_event(events)
                self.assertEqual((free.type, free.token), ("free", grant.token))
                self.assertTrue(retries, "on_retry heard about the broken stream")
                streams = [s for s in proxy.requests("GET") if s.path.startswith("/events")]
                self.assertEqual(len(streams), 2)
                self.assertNotIn("last-event-id", streams[0].headers)
                self.assertEqual(streams[1].headers.get("last-event-id"), held.id)

    def test_close_from_another_thread_ends_the_iteration(self) -> None:
        events = self.client.observe(prefix=unique("observe-close"))
        self.assertEqual(self.next_event(events).type, "reset")
        ended = threading.Event()

        def drain() -> None:
            for _ in events:
                pass
            ended.set()

        threading.Thread(target=drain, daemon=True).start()
        events.close()
        self.assertTrue(ended.wait(5), "the iteration ended")


if __name__ == "__main__":
    unittest.main()
