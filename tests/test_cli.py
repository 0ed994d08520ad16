"""The CLI as users type it: help, schema, validate, dry-run, errors as one line with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, TEMPLATE, launch


def test_help_is_fast_and_light():
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "launcher.cli.main", "--help"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "launch --provider local JOB" in r.stdout
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    heavy = {"torch", "transformers", "datasets", "accelerate", "pydantic", "rich", "yaml", "sky", "boto3"}
    assert not (heavy & imported), heavy & imported


def test_no_arguments_prints_usage_and_exit_2():
    r = launch()
    assert r.returncode == 2 and "usage" in r.stdout


def test_schema_is_json_schema():
    r = launch("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert schema["title"] == "launcher job" and "training" in schema["properties"]


def test_validate_prints_resolved_job():
    r = launch("validate", str(TEMPLATE), "--set", "training.epochs=1", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["training"]["epochs"] == 1


def test_local_dry_run_writes_plan_and_bundle(tmp_path):
    out = tmp_path / "plan"
    r = launch("--provider", "local", str(TEMPLATE), "--dry-run", "--out", str(out))
    assert r.returncode == 0, r.stderr
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["bundle_sha256"]) == 64 and plan["provider"] == "local"
    assert plan["command"].startswith("python -m launcher.train.launch")
    assert (out / "bundle" / "MANIFEST.json").exists() and (out / "run.sh").exists()
    assert "privacy" in r.stderr.lower()


def _one_line_error(r, code=2):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_broken_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n  task: 3\n")
    line = _one_line_error(launch("--provider", "local", str(bad)))
    assert f"{bad}:2:7" in line


def test_bad_value_names_field(tmp_path):
    line = _one_line_error(launch(str(TEMPLATE), "--set", "training.batch_size=0", "--dry-run", "--out", str(tmp_path)))
    assert "training.batch_size" in line


def test_unknown_provider():
    line = _one_line_error(launch("--provider", "nosuchcloud", str(TEMPLATE), "--dry-run"))
    assert "unknown provider 'nosuchcloud'" in line and "local" in line


def test_missing_data_file(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("name: x\ntask: text-classification\nmodel:\n  name_or_path: m\ndata:\n  train: missing.csv\n")
    line = _one_line_error(launch(str(job), "--dry-run", "--out", str(tmp_path / "o")))
    assert f"{job}:6:3: data.train: no such data file" in line


def test_missing_column_and_single_class(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nhello,a\nworld,a\n")
    job = tmp_path / "job.yaml"
    job.write_text("name: x\ntask: text-classification\nmodel:\n  name_or_path: m\ndata:\n  train: d.csv\n"
                   "  text_column: body\n")
    line = _one_line_error(launch(str(job), "--dry-run", "--out", str(tmp_path / "o")))
    assert "data.text_column" in line and "'body' is not a column" in line
    line = _one_line_error(launch(str(job), "--set", "data.text_column=text", "--dry-run", "--out", str(tmp_path / "o")))
    assert "single class" in line


def test_unexpected_errors_are_one_line(tmp_path, monkeypatch):
    # An internal failure: a job whose output dir is a file. Still one line, no traceback.
    f = tmp_path / "file"
    f.write_text("x")
    r = launch(str(TEMPLATE), "--set", f"output.dir={f}/run", "--set", "data.max_train_samples=8")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert any(line.startswith("error:") for line in r.stderr.splitlines())


def test_export_only_providers_export_instead_of_failing(tmp_path):
    r = launch("--provider", "colab", str(TEMPLATE), "--set", f"output.dir={tmp_path}/colab")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "colab" / "tweets-sentiment.ipynb").exists() and "export only" in r.stderr
    env = {"KAGGLE_API_TOKEN": "", "KAGGLE_USERNAME": "", "KAGGLE_KEY": "", "KAGGLE_CONFIG_DIR": str(tmp_path)}
    r = launch("--provider", "kaggle", str(TEMPLATE), "--set", f"output.dir={tmp_path}/kaggle", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "kaggle" / "kaggle" / "kernel-metadata.json").exists()
    assert "kaggle kernels push" in r.stderr
