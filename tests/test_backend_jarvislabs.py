"""jarvislabs: create, status, destroy through the official client against an httpx.MockTransport."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from conftest import TEMPLATE
from launcher.backends import get_backend
from launcher.errors import CapabilityError, CredentialsError, UsageError
from launcher.jobfile import load_job
from launcher.plan import make_plan


class FakeJarvis:
    """Just enough of the Jarvislabs REST API for instances and startup scripts."""

    def __init__(self, refuse: int | None = None):
        self.instances: dict[int, dict] = {}
        self.scripts: list[dict] = []
        self.calls: list[tuple[str, str, dict]] = []
        self.refuse = refuse

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, q = request.url.path.strip("/"), dict(request.url.params)
        body = json.loads(request.content) if request.headers.get("content-type") == "application/json" else {}
        self.calls.append((request.method, path, body))
        if self.refuse:
            return httpx.Response(self.refuse, json={"detail": "Invalid token"})
        if path == "scripts/add":
            self.scripts.append({"script_id": 100 + len(self.scripts), "script_name": q.get("name")})
            return httpx.Response(200, json={"success": True})
        if path == "scripts":
            return httpx.Response(200, json={"success": True, "script_meta": self.scripts})
        if path == "misc/server_meta":
            return httpx.Response(200, json={"server_meta": [
                {"gpu_type": g, "region": "india-noida-01", "num_free_devices": 4, "spot_price": 1.0}
                for g in ("L4", "H100")]})
        if path.startswith("templates/") and path.endswith("/create"):
            mid = 5000 + len(self.instances)
            self.instances[mid] = {"machine_id": mid, "template": path.split("/")[1], "status": "Running",
                                   "name": body["name"], "gpu_type": body["gpu_type"], "num_gpus": body["num_gpus"],
                                   "region": body["region"], "ssh_str": "ssh -p 2222 root@127.0.0.1"}
            return httpx.Response(200, json={"success": True, "machine_id": mid})
        if path == "misc/status":
            return httpx.Response(200, json={"status": "Running"})
        if path == "users/fetch":
            return httpx.Response(200, json={"success": True, "instances": list(self.instances.values())})
        if path.startswith("users/fetch/"):
            inst = self.instances.get(int(path.rsplit("/", 1)[1]))
            return httpx.Response(200, json={"success": bool(inst), "instance": inst})
        if path == "misc/destroy":
            self.instances.pop(int(q["machine_id"]), None)
            return httpx.Response(200, json={"success": True})
        return httpx.Response(404, json={"detail": f"no {path}"})

    def creates(self):
        return [b for m, p, b in self.calls if p.endswith("/create")]


def plan_for(tmp_path: Path, *sets: str):
    loaded = load_job(str(TEMPLATE), [f"output.dir={tmp_path / 'run'}", *sets])
    backend = get_backend("jarvislabs")
    return backend, make_plan(loaded, "jarvislabs", tmp_path / "out" / "bundle", backend=backend)


@pytest.fixture
def api(monkeypatch):
    fake = FakeJarvis()
    monkeypatch.setenv("JL_API_KEY", "SENTINELjlKEY")
    monkeypatch.setattr("launcher.backends.jarvislabs.JarvislabsBackend.http_transport", httpx.MockTransport(fake))
    return fake


def test_render_request_and_startup_script(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SENTINELjarvis")
    backend, plan = plan_for(tmp_path)
    req_path, script = backend.render(plan, tmp_path / "out")
    req = json.loads(req_path.read_text())["instances.create"]
    assert req["gpu_type"] == "L4" and req["num_gpus"] == 1 and req["is_spot"] is False
    assert req["name"] == f"tweets-sentiment-{plan.bundle.sha256[:8]}"
    text = script.read_text()
    assert plan.train_command("/home/launcher-run/run") in text and "sha256sum -c" in text
    assert "SENTINEL" not in text + req_path.read_text()
    assert any("L4 instead" in n for n in plan.notes)


def test_create_status_destroy(tmp_path, api):
    backend, plan = plan_for(tmp_path, "compute.gpu=H100", "compute.spot=true", "providers.jarvislabs.region=IN2")
    handle = backend.submit(plan, tmp_path / "out")
    [create] = api.creates()
    assert create["gpu_type"] == "H100" and create["is_spot"] is True and create["region"] == "india-noida-01"
    assert create["script_id"] == "100" and create["script_args"] == ""
    assert handle.job_id in {str(k) for k in api.instances}
    st = backend.status(handle)
    assert st.state == "running" and "train.log" in st.detail
    backend.cancel(handle)
    assert not api.instances
    backend.cancel(handle)                       # safe to repeat
    assert backend.status(handle).finished


def test_submit_twice_creates_one_instance(tmp_path, api):
    backend, plan = plan_for(tmp_path)
    h1 = backend.submit(plan, tmp_path / "out")
    h2 = backend.submit(plan, tmp_path / "out")
    assert h1.job_id == h2.job_id and len(api.creates()) == 1


def test_refused_key_is_a_credentials_error(tmp_path, api):
    api.refuse = 401
    backend, plan = plan_for(tmp_path)
    with pytest.raises(CredentialsError, match="refused"):
        backend.submit(plan, tmp_path / "out")


def test_no_key(tmp_path, monkeypatch):
    monkeypatch.delenv("JL_API_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    chk = get_backend("jarvislabs").check_credentials()
    assert not chk.ok and "JL_API_KEY" in chk.hint


def test_limits_declared(tmp_path):
    with pytest.raises(CapabilityError, match="single instances"):
        plan_for(tmp_path, "compute.nodes=2")
    with pytest.raises(CapabilityError, match="GPU instances"):
        plan_for(tmp_path / "c", "compute.gpu=none")
    with pytest.raises(UsageError, match="unknown region"):
        plan_for(tmp_path / "r", "providers.jarvislabs.region=XX9")
    backend, plan = plan_for(tmp_path / "in", "data.regions=[IN1]")
    assert backend.region(plan) == "india-chennai-01"


def test_gpu_policy_cheapest_at_least_as_capable(tmp_path):
    backend, plan = plan_for(tmp_path, "compute.gpu=RTX3090")      # 24 GB, 71 TFLOP/s: L4 (24 GB, 121)
    req = backend.request(plan)
    assert req["gpu_type"] == "L4" and plan.settings["gpu_asked"] == "RTX3090"
    assert any("RTX3090" in n and "L4 instead" in n for n in plan.notes)
    backend, plan = plan_for(tmp_path / "a", "compute.gpu=A10")    # 125 TFLOP/s: L4 is not enough
    assert backend.request(plan)["gpu_type"] == "A100-80GB"
    backend, plan = plan_for(tmp_path / "h", "compute.gpu=H200")   # offered: taken as asked
    assert backend.request(plan)["gpu_type"] == "H200" and not any("instead" in n for n in plan.notes)


def test_resume_uri_installs_its_client_in_the_startup_script(tmp_path):
    loaded = load_job(str(TEMPLATE), [f"output.dir={tmp_path / 'run'}"])
    backend = get_backend("jarvislabs")
    plain = make_plan(loaded, "jarvislabs", tmp_path / "a" / "bundle", backend=backend)
    gs = make_plan(loaded, "jarvislabs", tmp_path / "b" / "bundle", backend=backend,
                   resume_from="gs://runs/team/b")
    assert plain.bundle.sha256 == gs.bundle.sha256
    assert "google-cloud-storage" not in backend.startup_script(plain)
    script = backend.startup_script(gs)
    install, start = script.index("pip install -q google-cloud-storage"), script.index("nohup")
    assert install < start and "--resume-from gs://runs/team/b" in script[start:]
