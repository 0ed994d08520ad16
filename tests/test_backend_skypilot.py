"""runpod, vast, skypilot: task YAMLs SkyPilot itself accepts; the submit path as far as it goes
without credentials; multi-node refused where SkyPilot cannot."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import TEMPLATE
from launcher.backends import get_backend
from launcher.errors import CapabilityError, CredentialsError
from launcher.jobfile import load_job
from launcher.plan import make_plan

SENTINEL = "hf_SENTINELskypilotZZZZ"


def plan_for(tmp_path: Path, provider: str, *sets: str):
    loaded = load_job(str(TEMPLATE), [f"output.dir={tmp_path / 'run'}", *sets])
    backend = get_backend(provider)
    return backend, make_plan(loaded, provider, tmp_path / "out" / "bundle", backend=backend)


@pytest.fixture(scope="module")
def sky():
    import sky as _sky  # 2-3 s, once
    return _sky


def load_task(sky, path: Path):
    return sky.Task.from_yaml_config(copy.deepcopy(yaml.safe_load(path.read_text())))


@pytest.mark.parametrize("provider,sets", [
    ("runpod", ()), ("vast", ("data.sensitivity=internal",)),
    ("skypilot", ("providers.skypilot.cloud=kubernetes", "compute.nodes=2", "compute.gpus=2")),
    ("runpod", ("compute.gpu=none", "compute.spot=true")),
])
def test_task_yaml_loads_in_skypilot(tmp_path, sky, provider, sets, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    backend, plan = plan_for(tmp_path, provider, *sets)
    [path] = backend.render(plan, tmp_path / "out")
    task = load_task(sky, path)
    cfg = yaml.safe_load(path.read_text())
    assert SENTINEL not in path.read_text()
    assert cfg["secrets"] == {"HF_TOKEN": None, "WANDB_API_KEY": None}
    assert Path(cfg["workdir"]) == plan.bundle.path.resolve()
    assert plan.train_command("../launcher-run") in cfg["run"]
    assert "requirements.txt" in cfg["setup"] and "--no-deps" in cfg["setup"]
    assert task.num_nodes == plan.job.compute.nodes
    res = next(iter(task.resources))
    assert res.use_spot == plan.job.compute.spot
    if plan.job.compute.gpu != "none":   # the shared GPU policy: no T4 on runpod/vast -> cheapest as capable
        want = {"runpod": "RTX4090", "vast": "RTX3090"}.get(provider, "T4")
        assert res.accelerators == {want: plan.job.compute.gpus}


def test_privacy_choices_are_recorded(tmp_path):
    backend, plan = plan_for(tmp_path / "r", "runpod", "data.sensitivity=internal")
    assert plan.settings["runpod_cloud_type"] == "secure"
    assert "SECURE" in backend.render(plan, tmp_path / "r" / "out")[0].read_text()
    backend, plan = plan_for(tmp_path / "v", "vast", "data.sensitivity=internal")
    cfg = yaml.safe_load(backend.render(plan, tmp_path / "v" / "out")[0].read_text())
    assert cfg["config"] == {"vast": {"datacenter_only": True}}
    backend, plan = plan_for(tmp_path / "p", "vast")
    assert "config" not in yaml.safe_load(backend.render(plan, tmp_path / "p" / "out")[0].read_text())


def test_regions_become_infra(tmp_path, sky):
    backend, plan = plan_for(tmp_path, "skypilot", "providers.skypilot.cloud=aws",
                             "providers.skypilot.region=eu-west-1")
    cfg = backend.task_config(plan)
    assert cfg["resources"]["infra"] == "aws/eu-west-1"
    assert next(iter(sky.Task.from_yaml_config(copy.deepcopy(cfg)).resources)).region == "eu-west-1"


@pytest.mark.parametrize("provider,sets", [("runpod", ()), ("vast", ()),
                                            ("skypilot", ("providers.skypilot.cloud=runpod",))])
def test_multi_node_refused_where_skypilot_cannot(tmp_path, provider, sets):
    with pytest.raises(CapabilityError) as e:
        plan_for(tmp_path, provider, "compute.nodes=2", *sets)
    msg = str(e.value)
    assert "single-node" in msg and "sagemaker" in msg and "kubernetes" in msg


def test_submit_without_credentials_stops_at_skypilots_check(tmp_path, sky, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    backend, plan = plan_for(tmp_path, "runpod")
    assert not backend.check_credentials().ok
    launched = []
    monkeypatch.setattr(sky, "launch", lambda *a, **k: launched.append(a))
    with pytest.raises(CredentialsError, match="runpod config"):
        backend.submit(plan, tmp_path / "out")
    assert not launched and (tmp_path / "out" / "sky-task.yaml").exists()


class FakeSky:
    """Stands in for SkyPilot's API-server calls; records what submit sends."""

    def __init__(self, queue=()):
        self.launched, self.queue_rows = [], list(queue)

    def launch(self, task, **kw):
        self.launched.append((task, kw))
        return ("launch", (7, None))

    def status(self, cluster_names=None):
        return ("status", [object()] if self.queue_rows else [])

    def queue(self, cluster):
        return ("queue", self.queue_rows)

    def job_status(self, cluster, ids):
        return ("job_status", {ids[0]: SimpleNamespace(value="RUNNING")})

    def cancel(self, cluster, job_ids=None):
        raise RuntimeError(f"Job {job_ids} not found")

    @staticmethod
    def stream_and_get(req):
        return req[1]


def _patch(monkeypatch, sky, fake):
    for name in ("launch", "status", "queue", "job_status", "cancel", "stream_and_get"):
        monkeypatch.setattr(sky, name, getattr(fake, name))
    from sky import clouds
    monkeypatch.setattr(clouds.RunPod, "_check_compute_credentials", classmethod(lambda cls: (True, None)))


def test_submit_sends_task_with_secrets_and_stable_cluster(tmp_path, sky, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    fake = FakeSky()
    _patch(monkeypatch, sky, fake)
    backend, plan = plan_for(tmp_path, "runpod")
    h = backend.submit(plan, tmp_path / "out")
    task, kw = fake.launched[0]
    assert kw["cluster_name"] == f"tweets-sentiment-{plan.bundle.sha256[:8]}" == h.job_id
    assert kw["down"] is True and h.extra["sky_job_id"] == 7
    secrets = {k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v) for k, v in task.secrets.items()}
    assert secrets == {"HF_TOKEN": SENTINEL}
    assert SENTINEL not in (tmp_path / "out" / "sky-task.yaml").read_text()
    assert backend.status(h).state == "running"
    backend.cancel(h)  # "not found" counts as done
    backend.cancel(h)


def test_submit_twice_reuses_the_job(tmp_path, sky, monkeypatch):
    row = SimpleNamespace(job_name="tweets-sentiment", job_id=3, status=SimpleNamespace(value="RUNNING"))
    fake = FakeSky(queue=[row])
    _patch(monkeypatch, sky, fake)
    backend, plan = plan_for(tmp_path, "runpod")
    h = backend.submit(plan, tmp_path / "out")
    assert not fake.launched and h.extra["sky_job_id"] == 3


# -- spot as SkyPilot managed jobs -------------------------------------------------------------

def test_spot_renders_a_managed_job_with_the_run_dir_on_a_bucket(tmp_path, sky):
    backend, plan = plan_for(tmp_path, "skypilot", "providers.skypilot.cloud=aws", "compute.spot=true")
    [path] = backend.render(plan, tmp_path / "out")
    cfg = yaml.safe_load(path.read_text())
    task = load_task(sky, path)                                       # SkyPilot's own schema
    [(mount, storage)] = task.storage_mounts.items()
    assert mount == "/launcher-run" and storage.mode.value == "MOUNT_CACHED" and storage.persistent
    assert storage.name.startswith(f"launcher-tweets-sentiment-{plan.bundle.sha256[:8]}-")
    run_dir = f"/launcher-run/tweets-sentiment-{plan.bundle.sha256[:8]}"
    assert plan.train_command(run_dir) in cfg["run"]                  # the train command writes into it
    res = next(iter(task.resources))
    assert res.use_spot and "autostop" not in cfg["resources"] and cfg["resources"]["job_recovery"]
    assert "sky jobs launch" in path.read_text() and any("managed job" in n for n in plan.notes)


def test_spot_bucket_named_by_the_user(tmp_path, sky):
    backend, plan = plan_for(tmp_path, "skypilot", "providers.skypilot.cloud=gcp", "compute.spot=true",
                             "providers.skypilot.storage_bucket=gs://team-runs/launcher")
    [path] = backend.render(plan, tmp_path / "out")
    [storage] = load_task(sky, path).storage_mounts.values()
    assert storage.source == "gs://team-runs/launcher"


def test_runpod_and_vast_cannot_do_managed_spot_and_say_so(tmp_path, sky):
    """The declared limit matches SkyPilot's own feature flags for each cloud."""
    from sky import clouds
    from launcher.backends import skyjobs
    for cloud, cls in {**skyjobs.NO_MOUNT, **skyjobs.NO_SPOT}.items():
        unsupported = getattr(clouds, cls)._CLOUD_UNSUPPORTED_FEATURES
        feature = clouds.CloudImplementationFeatures.STORAGE_MOUNTING if cloud in skyjobs.NO_MOUNT \
            else clouds.CloudImplementationFeatures.SPOT_INSTANCE
        assert feature in unsupported, cloud
    for ok in ("AWS", "GCP"):
        unsupported = getattr(getattr(clouds, ok), "_CLOUD_UNSUPPORTED_FEATURES", {})
        assert clouds.CloudImplementationFeatures.STORAGE_MOUNTING not in unsupported
    backend, plan = plan_for(tmp_path, "runpod", "compute.spot=true")
    assert "managed_spot" in backend.cannot and "STORAGE_MOUNTING" in backend.cannot["managed_spot"]
    cfg = backend.task_config(plan)                                   # the fallback: a plain spot cluster
    assert "file_mounts" not in cfg and cfg["resources"]["use_spot"] and cfg["resources"]["autostop"]
    assert any("spot without recovery" in n for n in plan.notes)
    with pytest.raises(CapabilityError, match="no spot"):
        plan_for(tmp_path / "l", "skypilot", "providers.skypilot.cloud=lambda", "compute.spot=true")


class FakeJobs:
    """sky.jobs entry points: records launches, answers the queue from `rows`."""

    def __init__(self, rows=()):
        self.launched, self.cancelled, self.rows = [], [], list(rows)

    def launch(self, task, name=None, **kw):
        self.launched.append((task, name))
        return ("jobs.launch", ([11], None))

    def queue_v2(self, refresh, **kw):
        rows = [r for r in self.rows if not kw.get("job_ids") or r.job_id in kw["job_ids"]]
        return ("jobs.queue", (rows, len(rows), {}, len(rows)))

    def cancel(self, job_ids=None, **kw):
        self.cancelled.append(job_ids)
        return ("jobs.cancel", None)

    def tail_logs(self, job_id=None, follow=True, preload_content=True, **kw):
        return iter(["step 1 loss 0.7\n", None])


def test_spot_submit_goes_to_managed_jobs(tmp_path, sky, monkeypatch):
    fake, jobs = FakeSky(), FakeJobs()
    _patch(monkeypatch, sky, fake)
    for name in ("launch", "queue_v2", "cancel", "tail_logs"):
        monkeypatch.setattr(sky.jobs, name, getattr(jobs, name))
    monkeypatch.setattr(sky.clouds.AWS, "_check_compute_credentials", classmethod(lambda cls: (True, None)))
    backend, plan = plan_for(tmp_path, "skypilot", "providers.skypilot.cloud=aws", "compute.spot=true")
    h = backend.submit(plan, tmp_path / "out")
    assert not fake.launched and len(jobs.launched) == 1             # sky.jobs.launch, not sky.launch
    task, name = jobs.launched[0]
    assert name == f"tweets-sentiment-{plan.bundle.sha256[:8]}" and "/launcher-run" in task.storage_mounts
    assert h.extra["managed"] and h.extra["sky_job_id"] == 11 and h.extra["storage"]["store"] == "s3"
    jobs.rows = [SimpleNamespace(job_id=11, job_name=name, status=SimpleNamespace(value="RECOVERING"),
                                 recovery_count=1)]
    st = backend.status(h)
    assert st.state == "running" and "RECOVERING" in st.detail and not st.finished
    assert list(backend.logs(h)) == ["step 1 loss 0.7"]
    backend.cancel(h)
    assert jobs.cancelled == [[11]]
    again = backend.submit(plan, tmp_path / "out")                    # the same plan: that job, not a second
    assert again.extra["sky_job_id"] == 11 and len(jobs.launched) == 1


def test_spot_fetch_reads_the_bucket(tmp_path, monkeypatch):
    from launcher.backends.base import Handle
    got = {"run/a/metrics.jsonl": b"{}", "run/a/checkpoints/step-000002/COMPLETE": b"x"}

    class Reader:
        def __init__(self, bucket):
            assert bucket == "b"

        def list(self, prefix):
            return [(k, len(v)) for k, v in got.items() if k.startswith(prefix)]

        def get(self, key, target):
            target.write_bytes(got[key])

    monkeypatch.setattr("launcher.resume._S3", Reader)
    h = Handle("skypilot", "11", "x", str(tmp_path), extra={"managed": True, "storage": {
        "bucket": "b", "prefix": "run/a", "store": "s3"}})
    dest = get_backend("skypilot").fetch(h, tmp_path / "f")
    assert (dest / "metrics.jsonl").exists() and (dest / "checkpoints/step-000002/COMPLETE").exists()


def test_remote_resume_uri_installs_its_client_in_setup(tmp_path):
    loaded = load_job(str(TEMPLATE), [f"output.dir={tmp_path / 'run'}"])
    backend = get_backend("runpod")
    plain = make_plan(loaded, "runpod", tmp_path / "a" / "bundle", backend=backend)
    s3 = make_plan(loaded, "runpod", tmp_path / "b" / "bundle", backend=backend,
                   resume_from="s3://runs/team/b/checkpoints/step-000004")
    gs = make_plan(loaded, "runpod", tmp_path / "c" / "bundle", backend=backend, resume_from="gs://runs/b")
    assert plain.bundle.sha256 == s3.bundle.sha256 == gs.bundle.sha256      # not in the bundle
    assert "boto3" not in backend.task_config(plain)["setup"]
    assert "pip install -q boto3" in backend.task_config(s3)["setup"]
    assert "pip install -q google-cloud-storage" in backend.task_config(gs)["setup"]
    assert "--resume-from s3://runs/team/b/checkpoints/step-000004" in backend.task_config(s3)["run"]
