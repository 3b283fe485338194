#!/usr/bin/env python3
"""Hold a leasehold lock from Python with nothing but the standard library.

    from leasehold_lock import Lock

    with Lock("report:daily", ttl=30) as lock:
        write_report(fence=lock.token)   # pass the fencing token with every write
        if lock.lost.is_set():           # set when the lock is gone: stop
            ...

The lock is renewed every ttl/3 on a background thread and released on leaving the
block. `lock.lost` is set when a renew answers 410, or when no renew has succeeded
before the lease could expire (counted from each request's send time).

Run the demo (hold a lock while "working" for SECONDS):

    LEASEHOLD_URL=http://127.0.0.1:8080 python3 leasehold_lock.py report:daily 5

Exit codes as the leasehold CLI: 0 done, 73 held by someone else, 74 lost, 75 unreachable.
"""
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

URL = os.environ.get("LEASEHOLD_URL", "http://127.0.0.1:8080").rstrip("/")
API_KEY = os.environ.get("LEASEHOLD_API_KEY")
TRANSIENT = (429, 502, 503, 504)


class LeaseholdError(Exception):
    """An error answer from the service, with its problem `code` and HTTP `status`."""

    def __init__(self, status, problem):
        self.status = status
        self.problem = problem
        self.code = problem.get("code", "http-%d" % status)
        super().__init__("%d %s: %s" % (status, self.code, problem.get("detail", "")))


def call(method, path, body=None, headers=None, timeout=15.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if API_KEY:
        req.add_header("Authorization", "Bearer " + API_KEY)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            text = res.read().decode()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            problem = json.loads(text)
        except ValueError:
            problem = {"detail": text}
        raise LeaseholdError(e.code, problem) from None


class Lock:
    def __init__(self, name, ttl=30, wait=0.0, owner=None, retry_for=10.0):
        self.name = name
        self.path = "/locks/" + urllib.parse.quote(name, safe=":@~._-")
        self.ttl = ttl
        self.wait = wait
        self.owner = owner or socket.gethostname()
        self.retry_for = retry_for
        self.renewals = 0
        self.lost = threading.Event()
        self._stop = threading.Event()

    def __enter__(self):
        # One Idempotency-Key for every attempt: a retry after a lost answer gets the
        # same grant back instead of a 409 against ourselves.
        key = str(uuid.uuid4())
        wait_until = time.monotonic() + self.wait
        give_up = wait_until + self.retry_for
        attempt = 0
        while True:
            sent = time.monotonic()
            wait = max(0.0, wait_until - sent)
            try:
                grant = call("POST", self.path, {"ttl": self.ttl, "owner": self.owner, "wait": round(wait, 3)},
                             {"Idempotency-Key": key}, timeout=15 + wait)
                break
            except LeaseholdError as e:
                if e.status not in TRANSIENT or time.monotonic() > give_up:
                    raise
            except OSError:  # no answer (refused, reset, timed out)
                if time.monotonic() > give_up:
                    raise
            attempt += 1
            time.sleep(min(2.0, 0.1 * 2 ** attempt) * random.uniform(0.5, 1.0))
        self.token = grant["token"]
        self.lease = grant["lease"]
        self.ttl = grant["ttl"]
        self._held_since(sent)
        self._thread = threading.Thread(target=self._renew_loop, daemon=True)
        self._thread.start()
        return self

    def _held_since(self, sent):
        # Count from our own send time, less a safety margin, never from expiresAt.
        self.valid_until = sent + self.ttl - min(2.0, self.ttl / 10)

    def _renew_loop(self):
        delay = self.ttl / 3
        while not self._stop.wait(delay):
            sent = time.monotonic()
            try:
                call("PUT", self.path + "/renew", {"lease": self.lease},
                     timeout=max(0.1, self.valid_until - sent))
                self._held_since(sent)
                self.renewals += 1
                delay = self.ttl / 3
            except LeaseholdError as e:
                if e.status not in TRANSIENT:  # 410: expired, released or someone else's
                    self.lost.set()
                    return
                delay = 0.2
            except OSError:
                delay = 0.2
            if time.monotonic() >= self.valid_until:
                self.lost.set()
                return

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if not self.lost.is_set():
            try:
                call("DELETE", self.path, {"lease": self.lease}, timeout=5)
            except (LeaseholdError, OSError):
                pass  # already gone, or unreachable: the lease expires on its own
        return False


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "report:daily"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    try:
        with Lock(name, ttl=int(os.environ.get("TTL", "30"))) as lock:
            print("got %s with fencing token %d" % (name, lock.token), flush=True)
            end = time.monotonic() + seconds
            # The work, in small steps that check the lock is still ours.
            while time.monotonic() < end and not lock.lost.is_set():
                lock.lost.wait(0.05)
            if lock.lost.is_set():
                print("lost %s; stopped the work" % name, file=sys.stderr)
                return 74
            print("done; renewed %d time(s)" % lock.renewals, flush=True)
        print("released %s" % name)
        return 0
    except LeaseholdError as e:
        if e.code == "lock-held":
            print("someone else holds %s: %s" % (name, e.problem.get("holder")), file=sys.stderr)
            return 73
        print(e, file=sys.stderr)
        return 75 if e.status in TRANSIENT else 1
    except OSError as e:
        print("leasehold unreachable at %s: %s" % (URL, e), file=sys.stderr)
        return 75


if __name__ == "__main__":
    sys.exit(main())
