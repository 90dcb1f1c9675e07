"""The Google Cloud Storage client of the package, and listing a prefix within a deadline.

Reads use an anonymous client unless a client is given: public buckets such
as Google's ``atari-replay-datasets`` need no credentials, and default
credentials found on the machine are never picked up for a read. When
``STORAGE_EMULATOR_HOST`` is set (``http://host:port``), google-cloud-storage
sends every request there instead of ``storage.googleapis.com``. Writing
(:mod:`.push`) takes the caller's client, or the default one.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

from .gcs_errors import RemoteSourceError, SourceUnreachableError
from .gcs_retry import (
    Budget,
    check_deadline,
    describe_error,
    endpoint_of,
    unreachable_cause,
)

__all__ = ["anonymous_client", "api_exceptions", "bounded_request", "list_blobs", "location", "storage_module"]

T = TypeVar("T")

_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


def storage_module() -> Any:
    """``google.cloud.storage``, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("google.cloud.storage")
    except ImportError as err:
        raise ImportError(
            "reaching Google Cloud Storage needs google-cloud-storage; "
            "install it with `pip install torchrl-ext[gcs]`"
        ) from err


def api_exceptions() -> Any:
    from google.api_core import exceptions

    return exceptions


def anonymous_client() -> Any:
    """Build an anonymous ``google.cloud.storage.Client``.

    Honours ``STORAGE_EMULATOR_HOST`` (a missing ``http://`` scheme is added).

    Returns:
        A client that can list and read public buckets only.
    """
    storage = storage_module()
    host = os.environ.get(_EMULATOR_ENV)
    if host and "://" not in host:
        from google.auth.credentials import AnonymousCredentials

        client = storage.Client(
            project="<none>",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": f"http://{host}"},
        )
        client.project = None
        return client
    return storage.Client.create_anonymous_client()


def location(bucket: str, prefix: str) -> str:
    return f"gs://{bucket}/{prefix}"


def bounded_request(attempt: Callable[[Any], T], *, client: Any, deadline: float, doing: str, where: str,
                    advice: str, ways_out: str) -> T:
    """``attempt(timeouts)`` within ``deadline`` seconds, its failures as one-line errors.

    An unreachable server fails at once; transient errors (resets, 5xx) are
    retried until the deadline. ``doing`` (``"listing"``, ``"reading"``) and
    ``where`` name the request; ``advice`` ends the error of a missing or
    forbidden bucket, ``ways_out`` that of a server that cannot be reached.

    Raises:
        SourceUnreachableError: the server cannot be reached, or kept failing.
        RemoteSourceError: the bucket is missing or forbidden.
    """
    exc = api_exceptions()
    budget = Budget(deadline)
    try:
        return budget.call(attempt, reached=False)
    except exc.NotFound:
        raise RemoteSourceError(f"bucket not found (HTTP 404) at {where}; {advice}") from None
    except exc.Forbidden:
        raise RemoteSourceError(f"access forbidden (HTTP 403) at {where}; {advice}") from None
    except exc.RetryError as err:
        cause = err.cause if err.cause is not None else err
        raise SourceUnreachableError(
            f"{endpoint_of(client)} kept failing for {deadline:g} s while {doing} {where} "
            f"({describe_error(cause, budget.timeouts)}); retry later, or {ways_out}"
        ) from None
    except Exception as err:
        why = unreachable_cause(err, budget.timeouts)
        if why is None:
            raise
        verb = {"listing": "list", "reading": "read"}.get(doing, doing)
        raise SourceUnreachableError(f"cannot reach {endpoint_of(client)} ({why}) to {verb} {where}; "
                                     f"{ways_out}") from None


def list_blobs(bucket: str, prefix: str, *, client: Any, deadline: float, advice: str, ways_out: str,
               pattern: str | None = None, allow_empty: bool = False) -> list[Any]:
    """The objects under ``gs://bucket/prefix`` (sorted by name), listed within ``deadline`` seconds.

    Args:
        bucket: bucket name.
        prefix: object name prefix.
        client: a storage client.
        deadline: seconds the listing may take, transient errors (resets, 5xx) and
            their retries included.
        advice: what to do when the bucket is missing, forbidden or empty (ends the error).
        ways_out: what to do when the server cannot be reached (ends the error).
        pattern: optional ``fnmatch`` pattern on the name relative to ``prefix``.
        allow_empty: return ``[]`` instead of raising when nothing matches.

    Raises:
        SourceUnreachableError: the server cannot be reached or does not answer, or
            kept failing for ``deadline`` seconds.
        RemoteSourceError: the bucket is missing or forbidden, or nothing matches.
    """
    deadline = check_deadline(deadline)
    where = location(bucket, prefix)
    blobs = bounded_request(lambda timeouts: list(client.list_blobs(bucket, prefix=prefix, timeout=timeouts,
                                                                    retry=None)),
                            client=client, deadline=deadline, doing="listing", where=where, advice=advice,
                            ways_out=ways_out)
    blobs = [b for b in blobs if not b.name.endswith("/")]
    if pattern is not None:
        blobs = [b for b in blobs if fnmatch.fnmatchcase(b.name[len(prefix) :], pattern)]
    if not blobs and not allow_empty:
        found = "no objects" if pattern is None else f"no objects matching {pattern!r}"
        raise RemoteSourceError(f"{found} at {where}; {advice}")
    return sorted(blobs, key=lambda b: b.name)
