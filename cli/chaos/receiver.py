"""The chaos run's callback receiver: verifies every signature, and sometimes answers 503.

It runs in the chaos process on a loopback port. A delivery counts only when its
signature verifies with the tenant's secret; the first attempt of one delivery in four
is refused with 503, so the workers' retries are part of every run.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workers.callbacks import ATTEMPT_HEADER, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

SecretOf = Callable[[str], bytes]
"""The callback secret of a tenant id."""


def refuses_first_attempt(delivery_id: str) -> bool:
    """Whether the receiver answers 503 to this delivery's first attempt (one in four)."""
    return hashlib.sha256(delivery_id.encode()).digest()[0] % 4 == 0


class Receiver:
    """Counts verified deliveries per job; serve with ``start``, stop with ``close``."""

    def __init__(self, secret_of: SecretOf) -> None:
        self._secret_of = secret_of
        self._lock = threading.Lock()
        self.verified: Counter[str] = Counter()
        self.unverified = 0
        self.refused = 0
        self.aborted = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="chaos-receiver", daemon=True)

    @property
    def url(self) -> str:
        """Where callbacks go (jobs append their own path)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/callbacks"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving (when started) and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def delivered(self) -> set[str]:
        """Job ids with at least one verified delivery."""
        with self._lock:
            return set(self.verified)

    def counts(self) -> dict[str, int]:
        """Verified, redelivered (verified more than once), unverified, refused and aborted
        deliveries (the sender's connection closed before the whole body arrived)."""
        with self._lock:
            again = sum(n - 1 for n in self.verified.values())
            return {"verified": len(self.verified), "redelivered": again,
                    "unverified": self.unverified, "refused_503": self.refused, "aborted": self.aborted}

    def note_aborted(self) -> None:
        """A delivery whose sender went away mid-body (a worker SIGKILLed while sending)."""
        with self._lock:
            self.aborted += 1

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        """The status for one POST (the handler's logic, apart from HTTP)."""
        job_id = _job_id(body)
        if job_id is None or not self._verified(headers, body, job_id):
            with self._lock:
                self.unverified += 1
            return 401
        delivery = headers.get(DELIVERY_HEADER.lower(), job_id)
        if headers.get(ATTEMPT_HEADER.lower()) == "1" and refuses_first_attempt(delivery):
            with self._lock:
                self.refused += 1
            return 503
        with self._lock:
            self.verified[job_id] += 1
        return 200

    def _verified(self, headers: dict[str, str], body: bytes, job_id: str) -> bool:
        try:
            tenant = json.loads(body)["tenantId"]
            timestamp = int(headers.get(TIMESTAMP_HEADER.lower(), ""))
        except (ValueError, KeyError, TypeError):
            return False
        return verify(self._secret_of(tenant), timestamp, body, headers.get(SIGNATURE_HEADER.lower(), ""))


def _job_id(body: bytes) -> str | None:
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return None
    job_id = payload.get("jobId") if isinstance(payload, dict) else None
    return job_id if isinstance(job_id, str) else None


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if len(body) < length:  # no delivery: nobody is left to answer, and it is sent again
                receiver.note_aborted()
                self.close_connection = True
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver.answer(headers, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
