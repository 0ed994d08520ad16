"""`launch compare` over all nine providers and `launch privacy`, through the CLI; the privacy
policy as launch and dry-run apply it."""

from __future__ import annotations

import json

import pytest

from conftest import MANAGED_SETTINGS, TEMPLATE, launch

NINE = {"local", "colab", "kaggle", "vast", "runpod", "jarvislabs", "sagemaker", "azureml", "vertex"}
PAID = {"vast", "runpod", "jarvislabs", "sagemaker", "azureml", "vertex"}
NEED = {"provider", "gpu", "price_per_hour", "estimated_hours", "estimated_cost_usd", "privacy_tier", "allowed",
        "spot_cost_usd", "billing", "quota_warnings", "verdict", "offer", "price_as_of", "price_age_days",
        "cheapest_allowed"}


def compare_json(*extra):
    p = launch("compare", str(TEMPLATE), "--format", "json", *extra)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def default_rows():
    return compare_json()["rows"]


def test_compare_covers_all_nine_providers(default_rows):
    rows = default_rows
    assert {r["provider"] for r in rows} == NINE
    for r in rows:
        assert NEED <= set(r), NEED - set(r)
        assert r["estimated_hours"] > 0
        assert r["price_age_days"] >= 0 and r["price_as_of"][:4] == "2026"
    for r in rows:
        if r["provider"] in PAID:
            assert r["estimated_cost_usd"] > 0 and r["price_per_hour"] > 0
    local = next(r for r in rows if r["provider"] == "local")
    assert local["gpu"] == "none" and local["estimated_cost_usd"] == 0
    costs = [r["estimated_cost_usd"] for r in rows]
    assert costs == sorted(costs)
    marked = [r for r in rows if r["cheapest_allowed"]]
    assert len(marked) == 1 and marked[0]["allowed"]


def test_compare_managed_rows_use_the_jobs_gpu_and_marketplaces_substitute(default_rows):
    by = {r["provider"]: r for r in default_rows}
    assert by["sagemaker"]["offer"] == "ml.g4dn.xlarge" and by["sagemaker"]["gpu"] == "T4"
    assert by["azureml"]["offer"] == "Standard_NC4as_T4_v3"
    assert by["vertex"]["offer"] == "n1-standard-8"
    assert by["kaggle"]["gpus"] == 2 and by["kaggle"]["estimated_cost_usd"] == 0
    assert by["vast"]["gpu"] != "T4" and "no T4 there; renting" in by["vast"]["substitute"]
    assert by["azureml"]["spot_cost_usd"] < by["azureml"]["estimated_cost_usd"]


def test_compare_internal_data_prices_secure_hosts_and_confidential_refuses():
    rows = compare_json("--set", "data.sensitivity=internal", "--set", "compute.gpu=H100")["rows"]
    rp = next(r for r in rows if r["provider"] == "runpod")
    assert rp["secure"] and rp["verdict"] == "allowed-secure" and rp["price_per_hour"] == pytest.approx(3.49)
    rows = compare_json("--set", "data.sensitivity=confidential")["rows"]
    allowed = {r["provider"] for r in rows if r["allowed"]}
    assert allowed == {"local", "sagemaker", "azureml", "vertex"}
    refused = next(r for r in rows if r["provider"] == "vast")
    assert refused["verdict"] == "refused" and "confidential" in refused["reasons"][0]
    assert next(r for r in rows if r["cheapest_allowed"])["provider"] in allowed


def test_compare_quota_and_max_hours_warnings_for_a_long_job():
    d = compare_json("--set", "training.epochs=1000", "--set", "training.batch_size=1", "--provider", "kaggle",
                     "--provider", "sagemaker")
    rows = {r["provider"]: r for r in d["rows"]}
    assert set(rows) == {"kaggle", "sagemaker"}
    k = rows["kaggle"]
    assert k["estimated_hours"] > 9 and any("Kaggle Notebooks session (9 h)" in w for w in k["quota_warnings"])
    assert any("compute.max_hours" in w for w in rows["sagemaker"]["quota_warnings"])


def test_compare_multi_gpu_and_multi_node_scale_price_and_time(default_rows):
    d = compare_json("--set", "compute.gpu=A100-80GB", "--set", "compute.gpus=8", "--set", "compute.nodes=2",
                     "--provider", "sagemaker", "--provider", "runpod")
    sm = next(r for r in d["rows"] if r["provider"] == "sagemaker")
    assert sm["offer"] == "ml.p4de.24xlarge" and sm["price_per_hour"] == pytest.approx(2 * 47.11)
    rp = next(r for r in d["rows"] if r["provider"] == "runpod")
    assert rp["price_per_hour"] == pytest.approx(2 * 8 * 1.19)


def test_compare_human_table_explain_and_plot(tmp_path):
    png = tmp_path / "cost.png"
    p = launch("compare", str(TEMPLATE), "--explain", "--plot", str(png))
    assert p.returncode == 0, p.stderr
    assert "cheapest allowed" in p.stdout and "sagemaker" in p.stdout
    assert "6 x N" in p.stdout and "tokenizer.json" in p.stdout and "GFLOP/s per core" in p.stdout
    assert "days old" in p.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_bad_input_is_one_line_exit_2():
    p = launch("compare", str(TEMPLATE), "--provider", "nimbus")
    assert p.returncode == 2 and p.stderr.startswith("error: unknown provider") and "Traceback" not in p.stderr
    p = launch("compare", str(TEMPLATE), "--set", "compute.gpu=B999")
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_privacy_command():
    p = launch("privacy", "vast")
    assert p.returncode == 0 and "individual host" in p.stdout and "https://" in p.stdout
    p = launch("privacy", "--format", "json")
    assert {r["provider"] for r in json.loads(p.stdout)} == NINE
    p = launch("privacy", "runpod", "--job", str(TEMPLATE), "--set", "data.sensitivity=confidential")
    assert p.returncode == 0 and "verdict refused" in p.stdout
    p = launch("privacy", "nimbus")
    assert p.returncode == 2 and "unknown provider" in p.stderr


def test_dry_run_confidential_on_runpod_refused_before_the_backend(tmp_path):
    p = launch("--provider", "runpod", str(TEMPLATE), "--set", "data.sensitivity=confidential",
               "--dry-run", "--out", str(tmp_path / "rc"))
    assert p.returncode == 2 and "privacy" in p.stderr and "Traceback" not in p.stderr
    assert "--accept-privacy-risk" in p.stderr
    assert not (tmp_path / "rc" / "plan.json").exists()


def test_dry_run_internal_on_runpod_records_secure_cloud(tmp_path):
    out = tmp_path / "ri"
    p = launch("--provider", "runpod", str(TEMPLATE), "--set", "data.sensitivity=internal", "--dry-run", "--out", str(out))
    assert p.returncode == 0, p.stderr
    plan = json.loads((out / "plan.json").read_text())
    assert plan["settings"]["runpod_cloud_type"] == "secure"
    assert plan["privacy"]["verdict"] == "allowed-secure"
    assert p.stderr.startswith("privacy: runpod") and "Secure Cloud" in p.stderr


def test_dry_run_accepted_risk_recorded_in_plan(tmp_path):
    out = tmp_path / "acc"
    p = launch("--provider", "runpod", str(TEMPLATE), "--set", "data.sensitivity=confidential",
               "--accept-privacy-risk", "--dry-run", "--out", str(out))
    assert p.returncode == 0, p.stderr
    plan = json.loads((out / "plan.json").read_text())
    assert plan["accept_privacy_risk"] is True and plan["privacy"]["verdict"] == "accepted-risk"
    assert plan["privacy"]["reasons"]


def test_dry_run_confidential_on_sagemaker_allowed(tmp_path):
    out = tmp_path / "sc"
    p = launch("--provider", "sagemaker", str(TEMPLATE), "--set", "data.sensitivity=confidential",
               *MANAGED_SETTINGS, "--dry-run", "--out", str(out))
    assert p.returncode == 0, p.stderr
    plan = json.loads((out / "plan.json").read_text())
    assert plan["privacy"]["tier"] == "your-cloud-account" and plan["privacy"]["allowed"]
    assert "terms: https://aws.amazon.com" in p.stderr


def test_compare_live_prices_from_skypilot_cache_are_labelled(tmp_path):
    cache = tmp_path / ".sky" / "catalogs" / "v8" / "runpod"
    cache.mkdir(parents=True)
    (cache / "vms.csv").write_text(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Region,SpotPrice,Price\n"
        "1x_H100_SXM,H100-SXM,1,16,64,US,1.50,2.22\n1x_H100_SECURE,H100,1,16,64,US,,3.10\n")
    env = {"SKY_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path / "home")}
    base = ["compare", str(TEMPLATE), "--format", "json", "--set", "compute.gpu=H100", "--provider", "runpod"]
    d = json.loads(launch(*base, "--live", env=env).stdout)
    r = d["rows"][0]
    assert r["price_kind"] == "live" and r["price_per_hour"] == 2.22 and r["price_fetched_at"]
    assert "live prices" in d["prices"]
    sec = json.loads(launch(*base, "--live", "--set", "data.sensitivity=internal", env=env).stdout)["rows"][0]
    assert sec["price_kind"] == "live" and sec["price_per_hour"] == 3.10
    off = json.loads(launch(*base, env=env).stdout)["rows"][0]
    assert off["price_kind"] == "catalog" and off["price_per_hour"] == 2.69
    none = json.loads(launch(*base, "--live", env={"SKY_RUNTIME_DIR": str(tmp_path / "empty"),
                                                       "HOME": str(tmp_path / "home")}).stdout)
    assert none["rows"][0]["price_kind"] == "catalog" and "no live prices" in none["prices"]


def test_compare_flags_a_model_too_big_for_the_gpu():
    d = compare_json("--set", "model.name_or_path=org/Llama-3.1-8B", "--provider", "sagemaker")
    r = d["rows"][0]
    assert any("AdamW states; a T4 has 16 GB" in w for w in r["quota_warnings"])
    assert "guessed from the name" in d["assumptions"][0]


def test_compare_spot_jobs_rank_by_spot_cost():
    rows = compare_json("--set", "compute.spot=true", "--set", "compute.gpu=A100-80GB",
                        "--provider", "azureml", "--provider", "vertex", "--provider", "jarvislabs")["rows"]
    keys = [r["spot_cost_usd"] if r["spot_cost_usd"] is not None else r["estimated_cost_usd"] for r in rows]
    assert keys == sorted(keys) and rows[0]["provider"] == "azureml"     # 0.489/h low-priority


def test_busy_machine_warning(monkeypatch):
    import os

    from launcher import estimate as compare
    monkeypatch.setattr(os, "getloadavg", lambda: (40.0, 1.0, 1.0))
    assert "busy" in compare._busy_warning()[0]
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert compare._busy_warning() == []


def test_compare_marks_providers_a_launch_would_refuse_for_the_gpu():
    rows = compare_json("--set", "compute.gpu=H100")["rows"]
    by = {r["provider"]: r for r in rows}
    assert not by["kaggle"]["allowed"] and by["kaggle"]["verdict"] == "no-such-gpu"
    assert any("kaggle has no H100" in x for x in by["kaggle"]["reasons"])
    assert by["runpod"]["allowed"] and by["runpod"]["gpu"] == "H100"
    assert not next(r for r in rows if r["cheapest_allowed"])["provider"] in ("kaggle", "colab")
