"""`launch status|logs|cancel|fetch`: by run directory for local runs, by remembered handle for
providers with an API."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import launch
from launcher import handles
from launcher.backends.base import Handle
from launcher.cli.main import dispatch


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"status": "succeeded", "pid": None}))
    (d / "summary.json").write_text(json.dumps({"status": "completed", "global_step": 6}))
    (d / "train.log").write_text("launcher: single machine\nstep 6 loss 0.5\n")
    return d


def test_local_run_by_directory(run_dir, tmp_path):
    env = {"LAUNCHER_HOME": str(tmp_path / "lh")}
    r = launch("status", str(run_dir), env=env)
    assert r.returncode == 0 and "succeeded" in r.stdout and "step 6" in r.stdout
    r = launch("logs", str(run_dir), env=env)
    assert r.stdout.splitlines() == ["launcher: single machine", "step 6 loss 0.5"]
    for _ in range(2):  # cancel is safe to repeat, also on a finished run
        r = launch("cancel", str(run_dir), env=env)
        assert r.returncode == 0 and "cancel requested" in r.stdout
    r = launch("fetch", str(run_dir), "--dest", str(tmp_path / "copy"), "--format", "json", env=env)
    assert r.returncode == 0 and (tmp_path / "copy" / "summary.json").exists()


def test_unknown_reference_is_a_clean_usage_error(tmp_path):
    r = launch("status", "nosuchjob", env={"LAUNCHER_HOME": str(tmp_path / "lh")})
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr


def test_remembered_remote_handle(tmp_path, monkeypatch, capsys):
    """A Jarvislabs job submit remembered: status and cancel by id, by name, and as 'last'."""
    monkeypatch.setenv("LAUNCHER_HOME", str(tmp_path / "lh"))
    monkeypatch.setenv("JL_API_KEY", "SENTINELjl")
    instances = {42: {"machine_id": 42, "template": "pytorch", "status": "Running", "name": "demo-1"}}

    def api(request: httpx.Request) -> httpx.Response:
        path = request.url.path.strip("/")
        if path.startswith("users/fetch/"):
            inst = instances.get(int(path.rsplit("/", 1)[1]))
            return httpx.Response(200, json={"success": bool(inst), "instance": inst})
        if path == "misc/destroy":
            instances.pop(int(request.url.params["machine_id"]), None)
            return httpx.Response(200, json={"success": True})
        return httpx.Response(404, json={"detail": path})

    monkeypatch.setattr("launcher.backends.jarvislabs.JarvislabsBackend.http_transport", httpx.MockTransport(api))
    handles.remember(Handle("jarvislabs", "42", "demo", str(tmp_path / "run")))
    assert dispatch("status", ["42"]) == 0
    assert "jarvislabs:42  demo  running" in capsys.readouterr().out
    assert dispatch("status", ["--all", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["job_id"] == "42"
    assert dispatch("cancel", ["demo"]) == 0 and not instances
    assert dispatch("cancel", ["last"]) == 0          # safe to repeat: the instance is gone
    capsys.readouterr()
    assert dispatch("status", ["jarvislabs:42", "--format", "json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["finished"] and "gone" in st["detail"]


def test_export_only_provider_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAUNCHER_HOME", str(tmp_path / "lh"))
    handles.remember(Handle("colab", "nb", "demo", str(tmp_path / "run")))
    assert dispatch("status", ["nb"]) == 2
    assert "colab cannot status: colab has no job API" in capsys.readouterr().err
