"""Shared test fixtures: an isolated environment, the CLI in a subprocess, no network but loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "job_templates" / "text-classification.yaml"
SMALL = ["--set", "data.max_train_samples=96", "--set", "data.max_eval_samples=64", "--set", "training.epochs=1"]
MANAGED_SETTINGS = [
    "--set", "providers.sagemaker.role_arn=arn:aws:iam::123456789012:role/SageMakerRole",
    "--set", "providers.sagemaker.bucket=s3://example-bucket/launcher",
    "--set", "providers.sagemaker.region=us-east-1",
    "--set", "providers.azureml.subscription_id=00000000-0000-0000-0000-000000000000",
    "--set", "providers.azureml.resource_group=rg", "--set", "providers.azureml.workspace=ws",
    "--set", "providers.azureml.compute=gpu-cluster",
    "--set", "providers.vertex.project=example-project", "--set", "providers.vertex.region=us-central1",
    "--set", "providers.vertex.staging_bucket=gs://example-bucket/launcher",
]


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory):
    """Libraries that write under HOME (SkyPilot, HF caches, our handle store) write to a temp dir."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    os.environ.update({
        "LAUNCHER_HOME": str(home / ".launcher"),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "SKY_RUNTIME_DIR": str(home / "sky"),
        "NO_COLOR": "1",
        "COLUMNS": "120",
        "TOKENIZERS_PARALLELISM": "false",
    })
    yield
    os.environ.clear()
    os.environ.update(saved)


_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1", "")) \
            and self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(f"network blocked in tests: {address}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


def managed_plan(provider: str, tmp_path: Path, *sets: str):
    """A plan for a managed platform from the demo template, small, with its settings set."""
    from launcher.jobfile import load_job
    from launcher.plan import make_plan
    overrides = [s for s in MANAGED_SETTINGS + SMALL if s != "--set"] + list(sets) + [f"output.dir={tmp_path / 'run'}"]
    return make_plan(load_job(str(TEMPLATE), overrides), provider, tmp_path / "bundle")


def launch(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the `launch` CLI in a subprocess (the way users run it)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "launcher.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=str(cwd or ROOT))


@pytest.fixture
def cli():
    return launch
