"""Provider faults against local stand-ins: 401/403 name the fix, 429/5xx/timeouts are retried a
bounded number of times with backoff, and a retried submission never creates a second job.

- Jarvislabs through its own client (httpx) with a MockTransport that fails on cue;
- SageMaker through boto3 against a stub HTTP server on 127.0.0.1 answering in the AWS JSON protocol.
The retry helper itself is unit-tested in test_backend_retry.py.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from launcher.backends.base import Handle
from launcher.backends.retry import with_retries
from launcher.errors import CredentialsError, ProviderError

from test_backend_jarvislabs import FakeJarvis, plan_for


@pytest.fixture
def delays(monkeypatch):
    """No real sleeping; the backoff the helper asked for is recorded."""
    got: list[float] = []
    monkeypatch.setitem(with_retries.__kwdefaults__, "sleep", got.append)
    return got


class Flaky:
    """Wraps the fake API: the first `n` requests matching `path_part` fail as told."""

    def __init__(self, api: FakeJarvis, fault, n: int, path_part: str = "", after: bool = False):
        self.api, self.fault, self.n, self.part, self.after = api, fault, n, path_part, after
        self.failed = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.part in request.url.path and self.failed < self.n:
            self.failed += 1
            if self.after:            # the server did it, then the answer got lost
                self.api(request)
            if isinstance(self.fault, int):
                return httpx.Response(self.fault, json={"detail": "busy"})
            raise self.fault("stub timeout", request=request)
        return self.api(request)


def jarvis(tmp_path, monkeypatch, fault, n, path_part="", after=False):
    api = FakeJarvis()
    flaky = Flaky(api, fault, n, path_part, after)
    monkeypatch.setenv("JL_API_KEY", "test-key")
    monkeypatch.setattr("launcher.backends.jarvislabs.JarvislabsBackend.http_transport", httpx.MockTransport(flaky))
    backend, plan = plan_for(tmp_path)
    return api, flaky, backend, plan


@pytest.mark.parametrize("fault", [429, 500, 502, 503])
def test_jarvislabs_transient_faults_are_retried(tmp_path, monkeypatch, delays, fault):
    api, flaky, backend, plan = jarvis(tmp_path, monkeypatch, fault, 2, "/create")
    h = backend.submit(plan, tmp_path / "out")
    assert flaky.failed == 2 and len(api.creates()) == 1 and h.job_id
    assert delays == sorted(delays) and len(delays) == 2 and delays[1] > delays[0]  # growing backoff


@pytest.mark.parametrize("fault", [httpx.ReadTimeout, httpx.ConnectError])
def test_jarvislabs_timeouts_are_retried(tmp_path, monkeypatch, delays, fault):
    api, flaky, backend, plan = jarvis(tmp_path, monkeypatch, 429, 0)
    h = backend.submit(plan, tmp_path / "out")
    flaky.fault, flaky.n, flaky.part = fault, 2, "/users/fetch"  # status (a GET) times out twice
    assert backend.status(h).state == "running" and flaky.failed == 2


def test_jarvislabs_create_timeout_is_not_replayed(tmp_path, monkeypatch, delays):
    """A POST that timed out may have been applied: it is reported, never replayed blindly."""
    api, flaky, backend, plan = jarvis(tmp_path, monkeypatch, httpx.ReadTimeout, 1, "/create", after=True)
    with pytest.raises(ProviderError, match="timed out"):
        backend.submit(plan, tmp_path / "out")
    assert len(api.instances) == 1
    h = backend.submit(plan, tmp_path / "out")                     # running it again finds that one
    assert len(api.instances) == 1 and int(h.job_id) in api.instances


def test_jarvislabs_gives_up_after_a_bound(tmp_path, monkeypatch, delays):
    api, flaky, backend, plan = jarvis(tmp_path, monkeypatch, 503, 10_000, "/create")
    with pytest.raises(ProviderError, match="after 4 attempts") as e:
        backend.submit(plan, tmp_path / "out")
    assert flaky.failed == 4 and "jarvislabs" in str(e.value)


@pytest.mark.parametrize("status", [401, 403])
def test_jarvislabs_refused_credentials(tmp_path, monkeypatch, delays, status):
    api, flaky, backend, plan = jarvis(tmp_path, monkeypatch, status, 10_000)
    with pytest.raises(CredentialsError) as e:
        backend.submit(plan, tmp_path / "out")
    assert "credentials for jarvislabs were refused" in str(e.value) and "JL_API_KEY" in str(e.value)
    assert flaky.failed == 1 and not delays                       # refused: not retried


def test_jarvislabs_submit_twice_is_one_instance(tmp_path, monkeypatch, delays):
    api, flaky, backend, plan = jarvis(tmp_path, monkeypatch, 429, 1, "/create")
    a = backend.submit(plan, tmp_path / "out")
    b = backend.submit(plan, tmp_path / "out")                    # the user (or a script) retries
    assert a.job_id == b.job_id and len(api.instances) == 1


@pytest.mark.parametrize("fault", [500, 502, 503])
def test_jarvislabs_lost_answer_is_not_a_second_instance(tmp_path, monkeypatch, delays, fault):
    """The server created the instance, then answered 5xx: the retry looks it up by name first."""
    api, flaky, backend, plan = jarvis(tmp_path, monkeypatch, fault, 1, "/create", after=True)
    h = backend.submit(plan, tmp_path / "out")
    assert flaky.failed == 1 and len(api.creates()) == 1          # the create the server did act on
    assert len(api.instances) == 1 and int(h.job_id) in api.instances
    assert len(delays) == 1                                       # one backoff, then the lookup found it


# ---------------------------------------------------------------- SageMaker via boto3 -> stub

class AwsStub:
    """Answers SageMaker JSON-protocol calls from a script of (status, body) replies."""

    def __init__(self, replies):
        self.replies, self.calls = list(replies), []
        stub = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", 0)))
                stub.calls.append(self.headers.get("x-amz-target", ""))
                status, body = stub.replies.pop(0) if len(stub.replies) > 1 else stub.replies[0]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-RequestId", "stub")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


DESCRIBED = (200, {"TrainingJobName": "j", "TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"})


@pytest.fixture
def sagemaker(monkeypatch):
    from launcher.backends import get_backend
    stubs = []

    def make(replies):
        s = AwsStub(replies)
        stubs.append(s)
        for k, v in {"AWS_ENDPOINT_URL": s.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        return s, get_backend("sagemaker")
    yield make
    for s in stubs:
        s.close()


HANDLE = Handle("sagemaker", "j", "tweets", "/tmp/none", extra={"region": "us-east-1"})


@pytest.mark.parametrize("reply", [(429, {"__type": "ThrottlingException", "message": "Rate exceeded"}),
                                   (500, {"__type": "InternalFailure", "message": "oops"}),
                                   (503, {"__type": "ServiceUnavailable", "message": "busy"})])
def test_sagemaker_transient_then_ok(sagemaker, delays, reply):
    stub, backend = sagemaker([reply, reply, reply, DESCRIBED])
    st = backend.status(HANDLE)
    assert st.state == "running" and len(stub.calls) == 4       # botocore's and our retries, bounded


def test_sagemaker_gives_up(sagemaker, delays):
    stub, backend = sagemaker([(503, {"__type": "ServiceUnavailable", "message": "busy"})])
    with pytest.raises(ProviderError, match="sagemaker"):
        backend.status(HANDLE)
    assert 1 < len(stub.calls) <= 16                              # 4 of ours x 4 of botocore's, at most


@pytest.mark.parametrize("reply", [(403, {"__type": "AccessDeniedException", "message": "denied"}),
                                   (400, {"__type": "UnrecognizedClientException", "message": "bad token"})])
def test_sagemaker_refused_credentials(sagemaker, delays, reply):
    stub, backend = sagemaker([reply])
    with pytest.raises(CredentialsError) as e:
        backend.status(HANDLE)
    assert "credentials for sagemaker were refused" in str(e.value) and len(stub.calls) == 1
