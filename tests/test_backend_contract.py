"""One contract over every registered backend: a dry-run renders with no credentials, carries the
local bundle hash, prints the privacy note, and honours what the backend declares it cannot do."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from conftest import MANAGED_SETTINGS, TEMPLATE, launch
from launcher.backends import REGISTRY, get_backend

SENTINELS = {"HF_TOKEN": "hf_SENTINELtokenAAAA1111", "WANDB_API_KEY": "SENTINELwandbBBBB2222",
             "RUNPOD_API_KEY": "SENTINELrunpodCCCC3333", "VAST_API_KEY": "SENTINELvastDDDD4444",
             "JL_API_KEY": "SENTINELjlEEEE5555", "KAGGLE_KEY": "SENTINELkaggleFFFF6666",
             "KAGGLE_API_TOKEN": "SENTINELkaggleGGGG7777"}
SKYPILOT = ["--set", "providers.skypilot.cloud=kubernetes"]


def _module_missing(provider: str) -> bool:
    return importlib.util.find_spec(REGISTRY[provider].split(":")[0]) is None


def _dry_run(tmp_path, provider, *extra, env=None):
    out = tmp_path / provider
    r = launch("--provider", provider, str(TEMPLATE), *MANAGED_SETTINGS, *SKYPILOT, *extra,
               "--dry-run", "--out", str(out), env=env)
    return r, out


@pytest.mark.parametrize("provider", list(REGISTRY))
def test_backend_contract(tmp_path, provider):
    if _module_missing(provider):
        pytest.skip(f"{REGISTRY[provider]} not written yet (another issue)")
    backend = get_backend(provider)
    ref, ref_out = _dry_run(tmp_path / "ref", "local")
    assert ref.returncode == 0, ref.stderr
    r, out = _dry_run(tmp_path, provider)
    assert r.returncode == 0, r.stderr
    assert "privacy" in r.stderr.lower()
    plan = json.loads((out / "plan.json").read_text())
    assert plan["bundle_sha256"] == json.loads((ref_out / "plan.json").read_text())["bundle_sha256"]
    assert plan["provider"] == provider
    assert (out / "bundle" / "MANIFEST.json").exists()
    artifacts = [p for p in out.rglob("*") if p.is_file() and "bundle" not in p.relative_to(out).parts
                 and p.name != "plan.json"]
    assert artifacts, f"{provider} rendered nothing"
    # what the backend says it cannot do is refused with its reason; what it can is rendered
    r2, _ = _dry_run(tmp_path / "n2", provider, "--set", "compute.nodes=2")
    if "multi_node" in backend.cannot:
        assert r2.returncode == 2 and "Traceback" not in r2.stderr
        assert backend.cannot["multi_node"].split(";")[0][:40] in r2.stderr.replace("\n", " ")
    else:
        assert r2.returncode == 0, r2.stderr
    if not backend.can("submit"):
        with pytest.raises(Exception, match="cannot submit"):
            backend.require("submit")


MINE = ("runpod", "vast", "skypilot", "jarvislabs", "colab", "kaggle")


def test_no_secret_lands_in_any_dry_run(tmp_path):
    env = dict(os.environ, **SENTINELS)
    for provider in MINE:
        r, out = _dry_run(tmp_path, provider, env=env)
        assert r.returncode == 0, r.stderr
        assert not any(v in r.stdout + r.stderr for v in SENTINELS.values())
        for f in out.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert not any(v.encode() in data for v in SENTINELS.values()), f"{provider}: {f}"
