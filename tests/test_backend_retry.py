"""launcher.backends.retry: bounded retries with backoff; 401/403 become a CredentialsError."""

from __future__ import annotations

import pytest

from launcher.backends.retry import http_status, is_transient, with_retries
from launcher.errors import CredentialsError, ProviderError


class HTTPFault(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status_code = status


def flaky(faults):
    calls = []

    def fn():
        calls.append(1)
        if faults:
            raise faults.pop(0)
        return "ok"
    return fn, calls


def test_transient_faults_are_retried_with_backoff():
    sleeps = []
    fn, calls = flaky([HTTPFault(429), HTTPFault(503), TimeoutError("slow")])
    assert with_retries("vast", fn, sleep=sleeps.append, base_delay=0.5) == "ok"
    assert len(calls) == 4 and sleeps == [0.5, 1.0, 2.0]


def test_gives_up_after_the_bound():
    sleeps = []
    fn, calls = flaky([HTTPFault(500)] * 5)
    with pytest.raises(ProviderError, match="vast: sky launch failed after 3 attempts"):
        with_retries("vast", fn, attempts=3, sleep=sleeps.append, what="sky launch", max_delay=0.7)
    assert len(calls) == 3 and sleeps == [0.5, 0.7]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_not_retried(status):
    fn, calls = flaky([HTTPFault(status)])
    with pytest.raises(CredentialsError, match="the credentials for jarvislabs were refused") as e:
        with_retries("jarvislabs", fn, sleep=lambda s: None)
    assert "JL_API_KEY" in str(e.value) and len(calls) == 1


def test_other_errors_pass_through_at_once():
    fn, calls = flaky([ValueError("bad request")])
    with pytest.raises(ValueError):
        with_retries("kaggle", fn, sleep=lambda s: None)
    assert len(calls) == 1


def test_status_is_found_on_the_response_too():
    class Resp:
        status_code = 502

    class E(Exception):
        response = Resp()
    assert http_status(E()) == 502 and is_transient(E())
    assert not is_transient(HTTPFault(404)) and is_transient(ConnectionResetError())
