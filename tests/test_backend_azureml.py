"""Azure ML: the dumped job loads with load_job, jobs.validate and the submission run through an
offline MLClient (a fake credential and a transport that captures requests, answers canned JSON)."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from conftest import MANAGED_SETTINGS, TEMPLATE, launch, managed_plan

SENTINEL = "hf_SENTINEL_do_not_leak_4242"
ARM = "https://management.azure.com"


def make_plan(tmp_path, *sets):
    return managed_plan("azureml", tmp_path, *sets)


class FakeCredential:
    def get_token(self, *scopes, **kw):
        from azure.core.credentials import AccessToken
        return AccessToken("fake-token", int(time.time()) + 3600)


def capturing_transport(job_status=None):
    """An azure-core HttpTransport that records requests and answers like the ARM API would."""
    from azure.core.pipeline.transport import HttpTransport
    from azure.core.rest._http_response_impl import HttpResponseImpl
    from azure.core.utils import CaseInsensitiveDict

    class Resp(HttpResponseImpl):
        def __init__(self, req, status, body):
            super().__init__(request=req, internal_response=None, status_code=status, reason="OK",
                             headers=CaseInsensitiveDict({"content-type": "application/json"}),
                             content_type="application/json", stream_download_generator=None)
            self._content = json.dumps(body).encode()
            self._is_closed = self._is_stream_consumed = True

    class T(HttpTransport):
        def __init__(self):
            self.requests, self.jobs = [], dict(job_status or {})

        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def open(self):
            pass

        def close(self):
            pass

        def send(self, request, **kw):
            self.requests.append(request)
            path = request.url.split("?")[0][len(ARM):]
            if "/codes/" in path and path.endswith("/versions") and request.method == "GET":
                # the bundle's code snapshot is already uploaded (matched by content hash)
                return Resp(request, 200, {"value": [{"id": path + "/1", "name": "1",
                                                      "properties": {"codeUri": "https://acct.blob.core.windows.net/c/x"}}]})
            if "/codes/" in path and request.method == "GET":
                return Resp(request, 200, {"id": path, "name": "1", "properties": {"codeUri": "https://acct.blob.core.windows.net/c/x"}})
            name = path.rsplit("/", 1)[-1]
            if "/jobs/" in path and request.method == "PUT":
                body = json.loads(request.body)
                body.update(id=path, name=name)
                body["properties"]["status"] = "NotStarted"
                self.jobs[name] = body
                return Resp(request, 201, body)
            if "/jobs/" in path and path.endswith("/cancel") and request.method == "POST":
                return Resp(request, 202, {})
            if "/jobs/" in path and request.method == "GET":
                if name in self.jobs:
                    return Resp(request, 200, self.jobs[name])
                return Resp(request, 404, {"error": {"code": "UserError", "message": "job not found"}})
            if request.method == "PUT":  # environments: echo
                body = json.loads(request.body)
                body.update(id=path, name=name)
                return Resp(request, 201, body)
            return Resp(request, 404, {"error": {"code": "NotFound", "message": path}})
    return T()


@pytest.fixture
def backend():
    from launcher.backends.azureml import AzureMLBackend
    b = AzureMLBackend()
    b.credential = FakeCredential()
    b.client_kwargs = {"transport": capturing_transport()}
    return b


def test_dry_run_yaml_loads_with_load_job(tmp_path):
    from azure.ai.ml import load_job
    out = tmp_path / "out"
    r = launch("--provider", "azureml", str(TEMPLATE), *MANAGED_SETTINGS, "--set", "compute.nodes=2",
               "--set", "compute.gpus=4", "--dry-run", "--out", str(out), env={"HF_TOKEN": SENTINEL})
    assert r.returncode == 0, r.stderr
    assert "privacy" in r.stderr.lower()
    job = load_job(out / "azureml-job.yml")
    assert job.resources.instance_count == 2
    assert job.distribution.type == "pytorch" and job.distribution.process_count_per_instance == 1
    assert job.environment_variables["LAUNCHER_GPUS_PER_INSTANCE"] == "4"
    assert job.compute == "gpu-cluster"
    assert "python -m launcher.train.launch --output-dir" in job.command and "${{outputs.run}}" in job.command
    assert (out / "bundle" / "train.py").exists() and "code: bundle" in (out / "azureml-job.yml").read_text()
    pip = job.environment.conda_file["dependencies"][-1]["pip"]
    assert any(p.startswith("transformers==") for p in pip)
    for f in out.rglob("*"):
        if f.is_file() and f.relative_to(out).parts[0] != "bundle":
            assert SENTINEL.encode() not in f.read_bytes(), f


def test_serverless_spot_and_validate_offline(tmp_path, backend):
    from azure.ai.ml import load_job
    plan = make_plan(tmp_path, "providers.azureml.compute=", "compute.spot=true")
    path = backend.render(plan, tmp_path / "out")[0]
    job = load_job(path)
    assert job.resources.instance_type == "Standard_NC4as_T4_v3" and job.compute is None
    assert job.queue_settings.job_tier.lower() == "spot"
    ml = backend.ml_client(plan.job.providers.azureml)
    result = ml.jobs.validate(job)
    assert result.passed, result.error_messages
    assert backend.client_kwargs["transport"].requests == []  # validation is local


def test_rendered_yaml_is_what_the_sdk_would_build(tmp_path, backend):
    """render writes the YAML from plain dicts; load_job reads it, jobs.validate passes offline, and it
    loads to the same job as the YAML azure.ai.ml's own command() builder dumps for the same settings."""
    from azure.ai.ml import Output, command, load_job
    from azure.ai.ml.entities import Environment
    for sets in ((), ("compute.nodes=2", "compute.spot=true"), ("providers.azureml.compute=", "compute.spot=true"),
                 ("providers.azureml.environment=my-env:3",)):
        plan = make_plan(tmp_path / "-".join(sets or ("plain",)), *sets)
        path = backend.render(plan, tmp_path / "out")[0]
        assert (path.parent / yaml_safe(path)["code"]).resolve() == plan.bundle.path.resolve()
        job = load_job(path)
        assert backend.ml_client(plan.job.providers.azureml).jobs.validate(job).passed, sets
        d = backend.job_dict(plan, str(plan.bundle.path))
        s = plan.job.providers.azureml
        env = d["environment"] if isinstance(d["environment"], str) else Environment(**d["environment"])
        kw = {"compute": s.compute} if s.compute else {"instance_type": d["resources"]["instance_type"]}
        if "queue_settings" in d:
            kw["job_tier"] = "Spot"
        sdk = command(name=d["name"], display_name=d["display_name"], experiment_name=d["experiment_name"],
                      description=d["description"], code=str(plan.bundle.path), command=d["command"],
                      environment=env, environment_variables=d["environment_variables"],
                      instance_count=plan.job.compute.nodes, distribution=d["distribution"],
                      outputs={"run": Output(type="uri_folder", mode="rw_mount")}, timeout=d["limits"]["timeout"],
                      shm_size="16g", tags=d["tags"], **kw)._to_job()
        (tmp_path / "sdk.yml").write_text(yaml.safe_dump(json.loads(json.dumps(sdk._to_dict(), default=str))))
        a, b = _comparable(job), _comparable(load_job(tmp_path / "sdk.yml"))
        assert a == b, (sets, sorted(a), sorted(b))
    assert yaml_safe(path)["environment"] == "azureml:my-env:3"
    assert job.command.startswith("pip install -r requirements.txt && ")


def yaml_safe(path):
    return yaml.safe_load(path.read_text())


def _comparable(job) -> dict:
    """The loaded job's dict without the code path (absolute in one, relative in the other) and
    empty defaults (tags: {} vs no tags)."""
    def prune(x):
        if isinstance(x, dict):
            x = {k: prune(v) for k, v in x.items() if k != "code"}
            return {k: v for k, v in x.items() if v not in ({}, [], None)}
        return [prune(v) for v in x] if isinstance(x, list) else x
    return prune(json.loads(json.dumps(job._to_dict(), default=str)))


def test_submit_refuses_yaml_the_sdk_rejects_before_any_call(tmp_path, backend, monkeypatch):
    from launcher.errors import UsageError
    plan = make_plan(tmp_path)
    good = backend.job_dict
    monkeypatch.setattr(backend, "job_dict", lambda p, code: {**good(p, code), "gpu_type": "T4"})
    with pytest.raises(UsageError, match="job YAML does not load"):
        backend.submit(plan, tmp_path / "sub")
    assert backend.client_kwargs["transport"].requests == []


def test_submit_request_is_captured_and_idempotent(tmp_path, backend):
    t = backend.client_kwargs["transport"]
    plan = make_plan(tmp_path, "compute.nodes=2")
    h = backend.submit(plan, tmp_path / "sub")
    puts = [r for r in t.requests if r.method == "PUT" and "/jobs/" in r.url]
    assert len(puts) == 1 and f"/workspaces/ws/jobs/{h.job_id}?" in puts[0].url
    assert puts[0].url.startswith(f"{ARM}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/")
    assert puts[0].headers["Authorization"] == "Bearer fake-token"
    props = json.loads(puts[0].body)["properties"]
    assert props["jobType"] == "Command" and props["resources"]["instanceCount"] == 2
    assert props["distribution"] == {"processCountPerInstance": 1, "distributionType": "PyTorch"}
    assert props["computeId"].endswith("/computes/gpu-cluster") and "/codes/" in props["codeId"]
    assert props["environmentVariables"]["LAUNCHER_BUNDLE_SHA256"] == plan.bundle.sha256
    assert SENTINEL not in json.dumps(props)
    h2 = backend.submit(plan, tmp_path / "sub")
    assert h2.job_id == h.job_id and h2.extra.get("reused")
    assert len([r for r in t.requests if r.method == "PUT" and "/jobs/" in r.url]) == 1


def test_status_and_cancel_safe_twice(tmp_path, backend):
    t = backend.client_kwargs["transport"]
    plan = make_plan(tmp_path)
    h = backend.submit(plan, tmp_path / "sub")
    st = backend.status(h)
    assert (st.state, st.finished) == ("pending", False)
    t.jobs[h.job_id]["properties"]["status"] = "Running"
    assert backend.status(h).state == "running"
    backend.cancel(h)
    cancels = [r for r in t.requests if r.method == "POST" and r.url.split("?")[0].endswith("/cancel")]
    assert len(cancels) == 1
    t.jobs[h.job_id]["properties"]["status"] = "Canceled"
    backend.cancel(h)
    assert len([r for r in t.requests if r.method == "POST" and r.url.split("?")[0].endswith("/cancel")]) == 1
    st = backend.status(h)
    assert (st.state, st.finished) == ("cancelled", True)


def test_missing_workspace_is_exit_2(tmp_path):
    r = launch("--provider", "azureml", str(TEMPLATE), *MANAGED_SETTINGS, "--set", "providers.azureml.workspace=",
               "--dry-run", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "providers.azureml.workspace" in r.stderr and "Traceback" not in r.stderr
