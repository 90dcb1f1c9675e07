"""How the Google Cloud Storage downloads treat the network: timeouts, retries, error text.

Three kinds of failure are told apart:

* **unreachable** -- the first request cannot reach the server at all (name
  resolution fails, the connection is refused or does not open within
  ``CONNECT_TIMEOUT`` seconds), or the server accepts the connection and
  sends nothing within ``READ_TIMEOUT`` seconds. The listing fails at once,
  without retrying.
* **transient** -- a reachable server drops or resets a connection, times out
  a read, closes a response early or answers 408/429/5xx. Retried with
  exponential backoff (``google.api_core.retry.Retry``) until the deadline.
* anything else (404, 403, a bad request) -- raised as it is.

Every wait is bounded by the caller's deadline: a :class:`Budget` gives each
attempt of a request connect and read timeouts that end within the time the
budget has left, and no attempt starts once it is spent. Messages name the
timeout that expired (``"the server accepted the connection but did not
answer within 60 s"``, ``"the connection did not open within 5 s"``).
"""

from __future__ import annotations

import http.client
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "Budget",
    "Cancelled",
    "check_deadline",
    "describe_error",
    "endpoint_of",
    "is_transient",
    "make_retry",
    "request_timeouts",
    "unreachable_cause",
]

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MIN_TIMEOUT = 0.05  # an attempt started just before the budget ends still gets a chance to connect

T = TypeVar("T")
Timeouts = tuple[float, float]


class Cancelled(Exception):
    """Another download of the same call failed; this one stops (its ``.part`` is kept)."""


def check_deadline(deadline: Any) -> float:
    """Validates ``deadline``: a positive, finite number of seconds."""
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not (
        0 < deadline < math.inf
    ):
        raise ValueError(f"`deadline` must be a positive number of seconds, got {deadline!r}")
    return float(deadline)


def request_timeouts(deadline: float) -> Timeouts:
    """``(connect, read)`` timeouts of one request: never longer than ``deadline``."""
    return min(CONNECT_TIMEOUT, deadline), min(READ_TIMEOUT, deadline)


class Budget:
    """The seconds one request may take, its retries included.

    Args:
        seconds: the budget, from now.

    Attributes:
        timeouts: ``(connect, read)`` of the first attempt, the ones messages name.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.timeouts = request_timeouts(seconds)

    def left(self) -> float:
        """Seconds left (0 when spent)."""
        return max(0.0, self.end - time.monotonic())

    def call(self, attempt: Callable[[Timeouts], T], cancel: threading.Event | None = None, *,
             reached: bool = True) -> T:
        """``attempt(timeouts)`` until it succeeds, with transient errors retried while the budget lasts.

        Each attempt gets ``(connect, read)`` timeouts ending within the budget's
        time left, so the call ends about when the budget does.

        Raises:
            google.api_core.exceptions.RetryError: transient errors until the budget was spent
                (``cause``: the last one).
            Exception: the first error that is not retried, as it is.
        """
        def bounded() -> T:
            return attempt(request_timeouts(max(self.left(), _MIN_TIMEOUT)))

        return make_retry(max(self.left(), _MIN_TIMEOUT), cancel, reached=reached)(bounded)()


def endpoint_of(client: Any) -> str:
    """The URL a storage client sends requests to, e.g. ``https://storage.googleapis.com``."""
    return str(getattr(client, "api_endpoint", None) or "the storage server")


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every exception it wraps (causes, contexts, ``reason``, exception args)."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "reason", None), getattr(e, "cause", None), e.__cause__, e.__context__]
        todo += [a for a in e.args if isinstance(a, BaseException)]


def _status(err: BaseException) -> int | None:
    code = getattr(err, "code", None)  # google.api_core.exceptions.GoogleAPICallError
    if isinstance(code, int):
        return code
    status = getattr(getattr(err, "response", None), "status_code", None)  # InvalidResponse
    return status if isinstance(status, int) else None


def _within(seconds: float | None) -> str:
    return "in time" if seconds is None else f"within {seconds:g} s"


def unreachable_cause(err: BaseException, timeouts: Timeouts | None = None) -> str | None:
    """Why the server could not be reached at all, or None when it answered or was reached.

    Args:
        err: an exception from a request.
        timeouts: the request's ``(connect, read)`` timeouts, named in the answer.

    Returns:
        ``"name resolution failed: ..."``, ``"connection failed: Connection refused"``,
        ``"the connection did not open within 5 s"``, ``"the server accepted the
        connection but did not answer within 60 s"`` (no response began), or None.
    """
    import requests
    from urllib3.exceptions import (
        ConnectTimeoutError,
        NameResolutionError,
        NewConnectionError,
    )

    connect, read = timeouts if timeouts is not None else (None, None)
    for e in _chain(err):
        if isinstance(e, (NameResolutionError, socket.gaierror)):
            return f"name resolution failed: {_oserror_text(e)}"
        if isinstance(e, NewConnectionError):  # a subclass of ConnectTimeoutError in urllib3
            return f"connection failed: {_oserror_text(e)}"
        if isinstance(e, (ConnectTimeoutError, requests.ConnectTimeout)):
            return f"the connection did not open {_within(connect)}"
        if isinstance(e, requests.ReadTimeout):  # raised while waiting for the response to begin
            return f"the server accepted the connection but did not answer {_within(read)}"
    return None


def _oserror_text(err: BaseException) -> str:
    for e in _chain(err):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    return str(err).rsplit(": ", 1)[-1]


def is_transient(err: BaseException) -> bool:
    """Whether a request that failed with ``err`` is worth retrying on a reachable server."""
    import requests
    import urllib3

    if isinstance(err, Cancelled):
        return False
    status = _status(err)
    if status is not None:
        return status in RETRY_STATUS
    return isinstance(err, (
        requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
        ConnectionError, TimeoutError, http.client.HTTPException,
        urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError,
    ))


def describe_error(err: BaseException, timeouts: Timeouts | None = None) -> str:
    """A short one-line cause: ``"connection reset by peer"``, ``"HTTP 503"``, ``"read timed out"``...

    ``timeouts``: the request's ``(connect, read)`` timeouts, named when one of them expired.
    """
    import requests
    from urllib3.exceptions import ProtocolError, ReadTimeoutError

    reached = unreachable_cause(err, timeouts)
    if reached is not None:
        return reached
    for e in _chain(err):
        status = _status(e)
        if status is not None:
            return f"HTTP {status}"
        if isinstance(e, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, (ReadTimeoutError, requests.ReadTimeout, socket.timeout)):
            return "read timed out"
        if isinstance(e, (http.client.IncompleteRead, ProtocolError, requests.exceptions.ChunkedEncodingError)):
            return "connection closed before the response was complete"
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__


def make_retry(timeout: float, cancel: threading.Event | None = None, *, reached: bool = True) -> Any:
    """A ``google.api_core.retry.Retry`` of transient errors for ``timeout`` seconds.

    Args:
        timeout: seconds from the first attempt after which no new attempt starts.
        cancel: when set, the next retryable error raises :class:`Cancelled` instead of sleeping.
        reached: whether the server has answered before; when False, an
            unreachable server (:func:`unreachable_cause`) is not retried.

    Returns:
        The retry object, for ``retry=`` of google-cloud-storage calls.
    """
    from google.api_core.retry import Retry

    def on_error(err: Exception) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("stopped: another download of this call failed") from err

    def predicate(err: Exception) -> bool:
        return is_transient(err) and (reached or unreachable_cause(err) is None)

    return Retry(predicate=predicate, initial=0.25, maximum=max(0.25, min(8.0, timeout / 4)),
                 multiplier=2.0, timeout=timeout, on_error=on_error)
