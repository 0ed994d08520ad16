"""Vertex AI: the CustomJob through its own proto type, and create/get/cancel against a local REST stub."""

from __future__ import annotations

import json

import pytest
from conftest import MANAGED_SETTINGS, TEMPLATE, launch, managed_plan

from stubs.vertex_stub import Stub

SENTINEL = "hf_SENTINEL_do_not_leak_4242"


def make_plan(tmp_path, *sets):
    return managed_plan("vertex", tmp_path, *sets)


@pytest.fixture
def backend():
    from launcher.backends.vertex import VertexBackend
    return VertexBackend()


def test_dry_run_writes_a_custom_job_the_proto_accepts(tmp_path):
    from google.cloud.aiplatform_v1.types import CustomJob
    out = tmp_path / "out"
    r = launch("--provider", "vertex", str(TEMPLATE), *MANAGED_SETTINGS, "--set", "compute.nodes=3",
               "--set", "compute.gpu=L4", "--set", "compute.gpus=2", "--dry-run", "--out", str(out),
               env={"HF_TOKEN": SENTINEL})
    assert r.returncode == 0, r.stderr
    assert "privacy" in r.stderr.lower()
    job = CustomJob.from_json((out / "vertex-custom-job.json").read_text())
    pools = job.job_spec.worker_pool_specs
    assert [p.replica_count for p in pools] == [1, 2]  # chief + 2 workers = 3 nodes
    assert pools[0].machine_spec.machine_type == "g2-standard-24"
    assert pools[0].machine_spec.accelerator_type.name == "NVIDIA_L4"
    assert pools[0].machine_spec.accelerator_count == 2
    script = pools[0].container_spec.command[-1]
    assert "python -m launcher.train.launch --output-dir /gcs/example-bucket/launcher/jobs/" in script
    assert job.job_spec.base_output_directory.output_uri_prefix.startswith("gs://example-bucket/launcher/jobs/")
    plan = json.loads((out / "plan.json").read_text())
    assert plan["offer"]["offer"] == "g2-standard-24" and plan["settings"]["vertex_region"] == "us-central1"
    for f in out.rglob("*"):
        if f.is_file() and "bundle" not in f.relative_to(out).parts[:1]:
            assert SENTINEL.encode() not in f.read_bytes(), f


def test_the_proto_rejects_unknown_fields_and_bad_enums(tmp_path, backend):
    from google.cloud.aiplatform_v1.types import CustomJob
    plan = make_plan(tmp_path)
    backend.render(plan, tmp_path / "out")
    d = json.loads((tmp_path / "out" / "vertex-custom-job.json").read_text())
    assert CustomJob.from_json(json.dumps(d)).job_spec.worker_pool_specs[0].replica_count == 1
    bad = json.loads(json.dumps(d))
    bad["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorType"] = "NVIDIA_TESLA_T5"
    with pytest.raises(Exception):
        CustomJob.from_json(json.dumps(bad))
    bad = json.loads(json.dumps(d))
    bad["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["gpuType"] = "T4"
    with pytest.raises(Exception):
        CustomJob.from_json(json.dumps(bad))


def test_rendered_json_round_trips_through_the_sdk(tmp_path, backend):
    """render writes plain JSON; CustomJob.from_json reads it and to_json gives back the same data,
    so what submit sends (from_json of that file) is exactly what the dry run shows."""
    from google.cloud.aiplatform_v1.types import CustomJob
    for sets in ((), ("compute.nodes=3", "compute.spot=true"), ("compute.gpu=none",),
                 ("providers.vertex.service_account=sa@example-project.iam.gserviceaccount.com",)):
        plan = make_plan(tmp_path / "-".join(sets or ("plain",)), *sets)
        path, _ = backend.render(plan, tmp_path / "out")
        d = json.loads(path.read_text())
        back = CustomJob.to_json(CustomJob.from_json(path.read_text()), use_integers_for_enums=False,
                                 always_print_fields_with_no_presence=False)
        assert json.loads(back) == d == backend.request(plan), sets


def test_accelerator_snapshot_is_the_sdks_enum():
    """The dry run checks accelerators against a snapshot (no SDK import); this fails when the
    installed google-cloud-aiplatform's AcceleratorType differs."""
    from google.cloud.aiplatform_v1.types import AcceleratorType
    from launcher.backends.vertex import ACCELERATORS
    live = [a for a in AcceleratorType.__members__ if a != "ACCELERATOR_TYPE_UNSPECIFIED"]
    assert sorted(ACCELERATORS) == sorted(live), f"AcceleratorType changed: ACCELERATORS = {tuple(live)}"


def test_submit_refuses_json_the_sdk_rejects_before_any_call(tmp_path, backend, monkeypatch):
    from launcher.errors import UsageError
    plan = make_plan(tmp_path)
    good = backend.request

    def bad(p):
        d = good(p)
        d["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["gpuType"] = "T4"
        return d
    monkeypatch.setattr(backend, "request", bad)
    monkeypatch.setattr(backend, "jobs_client", lambda region: pytest.fail("no call before the check"))
    with pytest.raises(UsageError, match="CustomJob is invalid"):
        backend.submit(plan, tmp_path / "sub")


def test_spot_timeout_and_impossible_requests(tmp_path, backend):
    plan = make_plan(tmp_path, "compute.spot=true", "compute.max_hours=3")
    req = backend.request(plan)
    assert req["jobSpec"]["scheduling"] == {"timeout": "10800s", "restartJobOnWorkerRestart": True,
                                            "strategy": "SPOT"}
    assert "restartJobOnWorkerRestart" not in backend.request(make_plan(tmp_path / "b"))["jobSpec"]["scheduling"]
    r = launch("--provider", "vertex", str(TEMPLATE), *MANAGED_SETTINGS, "--set", "compute.gpu=A10G",
               "--dry-run", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "vertex offers no A10G" in r.stderr and "T4" in r.stderr
    r = launch("--provider", "vertex", str(TEMPLATE), *MANAGED_SETTINGS, "--set", "providers.vertex.project=",
               "--dry-run", "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "providers.vertex.project" in r.stderr


def test_region_follows_data_regions(tmp_path, backend):
    from launcher.errors import UsageError
    with pytest.raises(UsageError, match="outside data.regions"):  # privacy policy or the backend
        make_plan(tmp_path, "data.regions=[eu]")
    plan = make_plan(tmp_path, "data.regions=[eu]", "providers.vertex.region=europe-west4")
    assert plan.settings["vertex_region"] == "europe-west4"


@pytest.fixture
def stub(monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    with Stub() as s:
        monkeypatch.setenv("LAUNCHER_VERTEX_ENDPOINT", s.url)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", s.url)
        s.creds = AnonymousCredentials()
        yield s


def test_submit_status_cancel_fetch_against_the_stub(tmp_path, backend, stub):
    from launcher.bundle import tar_bundle
    backend.credentials = stub.creds
    plan = make_plan(tmp_path, "compute.nodes=2")
    h = backend.submit(plan, tmp_path / "sub")
    name = h.extra["resource"]
    assert name.startswith("projects/example-project/locations/us-central1/customJobs/")
    job = stub.jobs[name]
    assert sum(int(p.get("replicaCount", 1)) for p in job["jobSpec"]["workerPoolSpecs"]) == 2
    # the bundle went to the staging bucket, byte for byte what tar_bundle makes
    key = [k for (b, k) in stub.objects if b == "example-bucket"][0]
    assert key.endswith("/source/bundle.tar.gz")
    assert stub.objects[("example-bucket", key)] == tar_bundle(plan.bundle, tmp_path / "again.tar.gz").read_bytes()
    # the same plan again finds the job instead of creating a second
    h2 = backend.submit(plan, tmp_path / "sub")
    assert h2.extra["resource"] == name and h2.extra.get("reused") and len(stub.jobs) == 1

    st = backend.status(h)
    assert (st.state, st.finished) == ("pending", False)
    stub.set_state(name, "JOB_STATE_RUNNING")
    assert backend.status(h).state == "running"
    backend.cancel(h)
    assert stub.jobs[name]["state"] == "JOB_STATE_CANCELLING"
    posts = [p for m, p in stub.requests if m == "POST" and p.endswith(":cancel")]
    backend.cancel(h)  # safe twice: no second cancel request
    assert len([p for m, p in stub.requests if m == "POST" and p.endswith(":cancel")]) == len(posts) == 1
    stub.set_state(name, "JOB_STATE_CANCELLED")
    st = backend.status(h)
    assert (st.state, st.finished) == ("cancelled", True)
    backend.cancel(h)

    lines = list(backend.logs(h))
    assert any(f'resource.labels.job_id="{h.job_id}"' in x for x in lines)

    run = h.extra["run"]
    stub.objects[("example-bucket", f"{run}/metrics.jsonl")] = b'{"type": "end", "step": 3}\n'
    stub.objects[("example-bucket", f"{run}/model/config.json")] = b"{}"
    dest = backend.fetch(h, tmp_path / "fetched")
    assert (dest / "metrics.jsonl").read_text().startswith('{"type": "end"')
    assert (dest / "model" / "config.json").exists()


def test_stub_rejects_what_the_api_schema_rejects(stub):
    import urllib.request
    body = json.dumps({"displayName": "x", "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"acceleratorType": "BOGUS"}}]}})
    req = urllib.request.Request(f"{stub.url}/v1/projects/p/locations/l/customJobs", data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 400
