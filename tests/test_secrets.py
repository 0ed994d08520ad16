"""Secrets never land in an artifact: sentinel values for every secret, a dry run of every
registered provider, then every file written and everything printed is searched."""

from __future__ import annotations

import importlib
import json

import pytest

from conftest import MANAGED_SETTINGS, TEMPLATE, launch
from launcher.backends import REGISTRY
from launcher.redact import MASK, SECRET_ENV, redact, redact_env, redact_obj, secret_values

SENTINELS = {name: f"SENTINEL{name.replace('_', '')}x{n:04d}q" for n, name in enumerate(SECRET_ENV)}
SENTINELS["HF_TOKEN"] = "hf_SENTINELtokenAAAA1111bbbbCCCC"


def _module_missing(provider: str) -> str | None:
    mod = REGISTRY[provider].split(":")[0]
    try:
        importlib.import_module(mod)
    except ModuleNotFoundError as e:
        return f"{mod} not available yet ({e.name} missing)"
    return None


@pytest.mark.parametrize("provider", sorted(REGISTRY))
def test_dry_run_leaks_no_secret(provider, tmp_path):
    why = _module_missing(provider)
    if why:
        pytest.skip(why)
    gcreds = tmp_path / "sa.json"
    gcreds.write_text(json.dumps({"type": "service_account", "private_key_id": "SENTINELgkeyid0001",
                                  "private_key": "-----BEGIN PRIVATE KEY-----\nSENTINELpem\n-----END PRIVATE KEY-----\n"}))
    env = {**SENTINELS, "GOOGLE_APPLICATION_CREDENTIALS": str(gcreds), "AWS_ACCESS_KEY_ID": "AKIASENTINEL00000000"}
    out = tmp_path / "out"
    extra = ["--set", "providers.skypilot.cloud=kubernetes"] if provider == "skypilot" else []
    r = launch("--provider", provider, str(TEMPLATE), *MANAGED_SETTINGS, *extra, "--dry-run", "--out", str(out),
               env=env)
    assert r.returncode == 0, r.stderr[-1500:]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files, "the dry run wrote nothing"
    leaks = [str(p.relative_to(out)) for p in files if b"SENTINEL" in p.read_bytes()]
    assert not leaks, f"{provider}: secrets in {leaks}"
    assert "SENTINEL" not in r.stdout + r.stderr


def test_redact_values_and_token_shapes(tmp_path):
    env = {"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz", "RUNPOD_API_KEY": "rpkey-123456", "KAGGLE_KEY": "abc"}
    text = "token=hf_abcdefghijklmnopqrstuvwxyz key rpkey-123456 k abc"
    got = redact(text, env)
    assert "hf_abc" not in got and "rpkey-123456" not in got
    assert got.endswith(" abc")                                  # too short to be a key: left alone
    assert redact("x hf_ZZZZZZZZZZZZZZZZZZZZZZZZ y", {}) == f"x {MASK} y"   # shape alone
    assert MASK in redact("AKIAABCDEFGHIJKLMNOP", {})
    assert redact("https://b.s3.amazonaws.com/o?X-Amz-Signature=abc123&x=1", {}).count("abc123") == 0
    assert redact_obj({"a": ["rpkey-123456", 3]}, env) == {"a": [MASK, 3]}
    assert redact_env({"RUNPOD_API_KEY": "rpkey-123456", "PATH": "/bin"}) == {"RUNPOD_API_KEY": MASK, "PATH": "/bin"}
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps({"private_key": "SECRETPEMVALUE", "client_email": "x@y"}))
    assert "SECRETPEMVALUE" in secret_values({"GOOGLE_APPLICATION_CREDENTIALS": str(sa)})
    assert "x@y" not in secret_values({"GOOGLE_APPLICATION_CREDENTIALS": str(sa)})


def test_output_and_errors_are_redacted(tmp_path, capsys, monkeypatch):
    from launcher.output import Output

    monkeypatch.setenv("WANDB_API_KEY", "wandbSECRET123")
    o = Output()
    o.info("info wandbSECRET123")
    o.warn("warn wandbSECRET123")
    o.result("result wandbSECRET123")
    o.json({"k": "wandbSECRET123"})
    cap = capsys.readouterr()
    assert "wandbSECRET123" not in cap.out + cap.err and cap.out.count(MASK) == 2
    bad = tmp_path / "job.yaml"
    bad.write_text("name: [\n")
    r = launch("--provider", "local", str(bad), "--set", "output.dir=wandbSECRET123", env={"WANDB_API_KEY": "wandbSECRET123"})
    assert r.returncode == 2 and "wandbSECRET123" not in r.stderr


def test_training_log_is_redacted(monkeypatch, capsys):
    """The training program wraps stdout/stderr (on every provider) when a secret is set."""
    import sys

    from launcher.train import main as tm

    monkeypatch.setenv("HF_TOKEN", "hf_TRAININGsecretTOKEN123456")
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    tm._redact_output()
    print("loading with token hf_TRAININGsecretTOKEN123456")
    print("warn hf_TRAININGsecretTOKEN123456", file=sys.stderr)
    cap = capsys.readouterr()
    assert "TRAININGsecret" not in cap.out + cap.err and MASK in cap.out
