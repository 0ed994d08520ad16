"""Bounded retries with backoff for provider calls, and one mapping of HTTP faults to errors.

API (small on purpose; every backend uses the same few calls):

    with_retries(provider, fn, *, attempts=4, base_delay=0.5, max_delay=8.0,
                 retry_on=is_transient, sleep=time.sleep, what="request")

runs `fn()` up to `attempts` times. An exception for which `retry_on(exc)` is true is retried
after `base_delay * 2**n` seconds (capped at `max_delay`); the last one is re-raised as a
ProviderError naming the provider ("gave up after 4 attempts"). An exception that is not
transient goes through `raise_for_fault` first: 401/403 become a CredentialsError
("the credentials for X were refused: <how to fix>"), everything else is re-raised unchanged.

`http_status(exc)` finds the HTTP status an SDK exception carries (`.status_code`,
`.response.status_code`, `.status`, `.code`), or None.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

from launcher.errors import CredentialsError, LauncherError, ProviderError

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
REFUSED_STATUS = frozenset({401, 403})

# How to fix refused credentials, per provider (the message names what to set).
FIX = {
    "runpod": "run `runpod config` with a valid key (SkyPilot reads ~/.runpod/config.toml)",
    "vast": "put a valid key in ~/.config/vastai/vast_api_key (`vastai set api-key KEY`)",
    "skypilot": "run `sky check` and fix the cloud it reports",
    "jarvislabs": "set JL_API_KEY to a valid key from jarvislabs.ai (or run `jl setup`)",
    "kaggle": "set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY) from kaggle.com > Settings > API",
}


def http_status(exc: BaseException) -> Optional[int]:
    for obj in (exc, getattr(exc, "response", None)):
        if obj is None:
            continue
        for attr in ("status_code", "status", "code"):
            v = getattr(obj, attr, None)
            if isinstance(v, int) and 100 <= v <= 599:
                return v
    return None


def is_transient(exc: BaseException) -> bool:
    """429, 5xx, timeouts and dropped connections are worth another try; nothing else is."""
    if isinstance(exc, LauncherError):
        return False
    status = http_status(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    name = type(exc).__name__.lower()
    return any(k in name for k in ("timeout", "connecterror", "connectionerror", "remoteprotocol"))


def raise_for_fault(provider: str, exc: BaseException, fix: Optional[str] = None) -> None:
    """401/403 -> CredentialsError with what to do; anything else is left to the caller."""
    if http_status(exc) in REFUSED_STATUS:
        raise CredentialsError(provider, f"the credentials for {provider} were refused",
                               hint=fix or FIX.get(provider, "check the provider's API key")) from exc


def with_retries(provider: str, fn: Callable[[], T], *, attempts: int = 4, base_delay: float = 0.5,
                 max_delay: float = 8.0, retry_on: Callable[[BaseException], bool] = is_transient,
                 sleep: Callable[[float], None] = time.sleep, what: str = "request") -> T:
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for n in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not retry_on(exc):
                raise_for_fault(provider, exc)
                raise
            if n == attempts - 1:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise ProviderError(provider, f"{what} failed after {attempts} attempts: {first}",
                                    hint="the provider is busy or unreachable; try again later") from exc
            sleep(min(max_delay, base_delay * (2 ** n)))
    raise AssertionError("unreachable")  # pragma: no cover
