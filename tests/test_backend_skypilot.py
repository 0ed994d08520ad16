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
    if plan.job.compute.gpu != "none":
        assert res.accelerators == {"T4": plan.job.compute.gpus}


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
