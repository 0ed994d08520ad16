"""Every kind of broken job file: one clear line naming file:line and field, exit 2, no traceback.

The property-based part mutates every job template in-process (load_job: fast); a representative
set then goes through the CLI in a subprocess, the way a user meets it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as stg

from conftest import MANAGED_SETTINGS, ROOT, TEMPLATE, launch
from launcher.errors import JobError, UsageError
from launcher.jobfile import MAX_JOB_BYTES, load_job

TEMPLATES = sorted((ROOT / "job_templates").glob("*.yaml"))
RAW = {p.name: yaml.safe_load(p.read_text()) for p in TEMPLATES}
LOCATED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): ")

# Fields that hold sizes or counts: zero or negative must be refused.
SIZES = ["training.epochs", "training.batch_size", "training.learning_rate", "training.gradient_accumulation_steps",
         "training.keep_checkpoints", "training.logging_every", "training.eval_every", "training.checkpoint_every",
         "data.max_length", "data.max_train_samples", "data.max_eval_samples", "compute.gpus", "compute.nodes",
         "compute.max_hours", "compute.disk_gb", "compute.max_price_per_hour"]
REQUIRED = ["name", "task", "model", "data", "model.name_or_path", "data.train"]
WRONG_TYPES = [[1, 2], {"a": 1}, "not-a-number", True]
NUMERIC = ["training.epochs", "training.batch_size", "training.learning_rate", "training.weight_decay",
           "data.max_length", "compute.gpus", "compute.nodes", "compute.max_hours", "training.seed"]


def _set(d: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[last] = value


def _del(d: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d[p]
    d.pop(last, None)


def check_refusal(e: UsageError, path: Path, field: str | None = None) -> None:
    """One line, exit code 2, located at the file (and line) and naming the field when there is one."""
    msg = str(e)
    assert e.exit_code == 2
    assert "\n" not in msg and "Traceback" not in msg
    assert msg.startswith(str(path)), msg
    if field is not None:
        m = LOCATED.match(msg)
        assert m, f"no file:line:col in {msg!r}"
        assert 1 <= int(m["line"]) <= max(1, path.read_bytes().count(b"\n") + 1)
        assert field in msg, f"{field} not named in {msg!r}"


def write(tmp: Path, name: str, data: dict | bytes | str) -> Path:
    p = tmp / name
    if isinstance(data, dict):
        p.write_text(yaml.safe_dump(data, sort_keys=False))
    elif isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data)
    return p


HYP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
template = stg.sampled_from(sorted(RAW))


@HYP
@given(name=template, field=stg.sampled_from(SIZES), value=stg.sampled_from([0, -1, -0.5, -1000]))
def test_zero_or_negative_sizes(tmp_path, name, field, value):
    raw = yaml.safe_load(yaml.safe_dump(RAW[name]))
    _set(raw, field, value)
    p = write(tmp_path, name, raw)
    with pytest.raises(JobError) as ei:
        load_job(p)
    check_refusal(ei.value, p, field)


@HYP
@given(name=template, field=stg.sampled_from(NUMERIC), value=stg.sampled_from(WRONG_TYPES))
def test_wrong_types(tmp_path, name, field, value):
    raw = yaml.safe_load(yaml.safe_dump(RAW[name]))
    _set(raw, field, value)
    p = write(tmp_path, name, raw)
    try:
        load_job(p)  # a bool for a float is coerced by pydantic (True -> 1.0): accepted, fine
    except JobError as e:
        check_refusal(e, p, field)
    else:
        assert value is True


@HYP
@given(name=template, section=stg.sampled_from(["", "model", "data", "training", "compute", "output"]),
       key=stg.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True))
def test_unknown_keys(tmp_path, name, section, key):
    raw = yaml.safe_load(yaml.safe_dump(RAW[name]))
    node = raw if not section else raw.setdefault(section, {})
    if key in node or (section == "" and key in ("providers",)):
        return
    node[key] = 1
    p = write(tmp_path, name, raw)
    with pytest.raises(JobError) as ei:
        load_job(p)
    check_refusal(ei.value, p, f"{section}.{key}" if section else key)
    assert "unknown field" in str(ei.value)


@HYP
@given(name=template, field=stg.sampled_from(REQUIRED))
def test_missing_keys(tmp_path, name, field):
    raw = yaml.safe_load(yaml.safe_dump(RAW[name]))
    _del(raw, field)
    p = write(tmp_path, name, raw)
    with pytest.raises(JobError) as ei:
        load_job(p)
    check_refusal(ei.value, p, field)
    assert "required field is missing" in str(ei.value)


BREAKS = ["key: [unclosed\n", "\tindented: tab\n", "a: b: c\n", "- list\nkey: value\n", "key: 'open\n",
          "{{\n", "&anchor\n", "name: x\nname: y\n", ": nokey\n", "  over: indented\n"]


@HYP
@given(name=template, brk=stg.sampled_from(BREAKS), where=stg.floats(0, 1))
def test_yaml_syntax_breaks(tmp_path, name, brk, where):
    lines = (ROOT / "job_templates" / name).read_text().splitlines(keepends=True)
    at = int(where * len(lines))
    p = write(tmp_path, name, "".join(lines[:at]) + brk + "".join(lines[at:]))
    try:
        load_job(p)
    except JobError as e:
        check_refusal(e, p)
        assert LOCATED.match(str(e)) or ":1:" in str(e) or str(e).startswith(f"{p}:"), str(e)
    # some insertions are still valid YAML and a valid job (e.g. a comment-like position): fine


@HYP
@given(name=template, junk=stg.binary(min_size=1, max_size=4).filter(lambda b: not _utf8(b)),
       where=stg.floats(0, 1))
def test_non_utf8_bytes(tmp_path, name, junk, where):
    data = (ROOT / "job_templates" / name).read_bytes()
    at = int(where * len(data))
    p = write(tmp_path, name, data[:at] + junk + data[at:])
    with pytest.raises(JobError) as ei:
        load_job(p)
    check_refusal(ei.value, p)
    assert "UTF-8" in str(ei.value) and LOCATED.match(str(ei.value))


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@pytest.mark.parametrize("content", ["", "   \n\n", "# only a comment\n", "---\n"])
def test_empty_files(tmp_path, content):
    p = write(tmp_path, "empty.yaml", content)
    with pytest.raises(JobError) as ei:
        load_job(p)
    check_refusal(ei.value, p)
    assert "empty" in str(ei.value)


def test_huge_file(tmp_path):
    p = write(tmp_path, "huge.yaml", TEMPLATE.read_text() + "#" * (MAX_JOB_BYTES + 1))
    with pytest.raises(JobError) as ei:
        load_job(p)
    check_refusal(ei.value, p)
    assert "limit" in str(ei.value)


@pytest.mark.parametrize("doc", ["[1, 2]\n", "just a string\n", "42\n"])
def test_not_a_mapping(tmp_path, doc):
    p = write(tmp_path, "scalar.yaml", doc)
    with pytest.raises(JobError) as ei:
        load_job(p)
    check_refusal(ei.value, p)


# ---------------------------------------------------------------- the CLI, as a user meets it

def data_job(tmp: Path, rows: list[dict], **data) -> Path:
    """A job on a local csv, the template otherwise."""
    f = tmp / "train.csv"
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    raw = yaml.safe_load(TEMPLATE.read_text())
    raw["data"].update({"train": "train.csv", "validation": None, "prepare": None, **data})
    raw["output"]["dir"] = str(tmp / "run")
    return write(tmp, "job.yaml", raw)


def refused(r, field: str | None = None, where: str | None = None) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    assert "Traceback" not in r.stderr + r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    line = errors[0]
    if where:
        assert re.search(re.escape(where) + r":\d+:\d+: ", line), line
    if field:
        assert field in line, line
    return line


def test_cli_broken_files(tmp_path):
    cases = {
        "syntax.yaml": (b"name: [unclosed\n", None),
        "empty.yaml": (b"", None),
        "latin1.yaml": (TEMPLATE.read_bytes().replace(b"Fine-tune", b"F\xefne-tune"), None),
        "huge.yaml": (TEMPLATE.read_bytes() + b"#" * (MAX_JOB_BYTES + 10), None),
    }
    for name, (data, field) in cases.items():
        p = write(tmp_path, name, data)
        refused(launch("--provider", "local", str(p), "--dry-run", "--out", str(tmp_path / "o")), field)
    raw = yaml.safe_load(TEMPLATE.read_text())
    raw["training"]["epochs"] = -1
    p = write(tmp_path, "neg.yaml", raw)
    refused(launch("--provider", "local", str(p), "--dry-run", "--out", str(tmp_path / "o")),
            "training.epochs", where=str(p))
    raw = yaml.safe_load(TEMPLATE.read_text())
    raw["compute"]["gpus"] = "two"
    p = write(tmp_path, "type.yaml", raw)
    refused(launch("--provider", "runpod", str(p), "--dry-run", "--out", str(tmp_path / "o")),
            "compute.gpus", where=str(p))


def test_cli_unknown_provider_and_override(tmp_path):
    line = refused(launch("--provider", "nosuchcloud", str(TEMPLATE), "--dry-run", "--out", str(tmp_path / "o")))
    assert "nosuchcloud" in line
    line = refused(launch("--provider", "local", str(TEMPLATE), "--set", "training.epocs=2", "--dry-run",
                          "--out", str(tmp_path / "o")), "training.epocs")


def test_cli_data_problems(tmp_path):
    rows = [{"text": f"tweet {i}", "label": "positive" if i % 2 else "negative"} for i in range(20)]
    missing = tmp_path / "missing"
    missing.mkdir()
    p = data_job(missing, rows)
    (missing / "train.csv").unlink()
    refused(launch("--provider", "local", str(p), "--dry-run", "--out", str(tmp_path / "o")), "data.train", where=str(p))
    d = tmp_path / "notext"
    d.mkdir()
    p = data_job(d, rows, text_column="tweet")
    refused(launch("--provider", "local", str(p), "--dry-run", "--out", str(tmp_path / "o")),
            "data.text_column", where=str(p))
    d = tmp_path / "nolabel"
    d.mkdir()
    p = data_job(d, rows, label_column="sentiment")
    refused(launch("--provider", "vast", str(p), "--dry-run", "--out", str(tmp_path / "o")),
            "data.label_column", where=str(p))
    d = tmp_path / "oneclass"
    d.mkdir()
    p = data_job(d, [{"text": f"t {i}", "label": "positive"} for i in range(20)])
    line = refused(launch("--provider", "local", str(p), "--dry-run", "--out", str(tmp_path / "o")),
                   "data.train", where=str(p))
    assert "single class" in line


@pytest.mark.parametrize("provider,gpu,offers", [("kaggle", "H100", "kaggle offers T4 (up to 2 per machine)"),
                                                 ("colab", "H200", "colab offers T4"),
                                                 ("sagemaker", "RTX4090", "it offers: T4")])
def test_cli_gpu_the_provider_lacks(tmp_path, provider, gpu, offers):
    """Nothing at least as capable: refused, naming what the provider has."""
    line = refused(launch("--provider", provider, str(TEMPLATE), "--set", f"compute.gpu={gpu}", *MANAGED_SETTINGS,
                          "--dry-run", "--out", str(tmp_path / "o")), None if provider == "sagemaker" else "compute.gpu")
    assert offers in line, line


def test_cli_gpu_the_provider_lacks_but_can_beat(tmp_path):
    """jarvislabs has no RTX3090, but an L4 is at least as capable: taken, and said."""
    r = launch("--provider", "jarvislabs", str(TEMPLATE), "--set", "compute.gpu=RTX3090", "--dry-run",
               "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert "renting L4 instead" in r.stderr


def test_cli_gpu_unknown_everywhere(tmp_path):
    refused(launch("--provider", "runpod", str(TEMPLATE), "--set", "compute.gpu=TPUv9", "--dry-run",
                   "--out", str(tmp_path / "o")), "compute.gpu")
