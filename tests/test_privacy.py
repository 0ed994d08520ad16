"""The privacy policy: every rule of data.sensitivity and data.regions, and the note's contents."""

from __future__ import annotations

import pytest

from launcher.job import Job
from launcher.privacy import decide, render_terms

NINE = ["local", "colab", "kaggle", "vast", "runpod", "jarvislabs", "sagemaker", "azureml", "vertex"]
OWN = {"local", "sagemaker", "azureml", "vertex"}


def job(sensitivity="public", regions=None, **providers) -> Job:
    data = {"train": "train.csv", "sensitivity": sensitivity}
    if regions is not None:
        data["regions"] = regions
    return Job.model_validate({"name": "t", "task": "text-classification",
                               "model": {"name_or_path": "m"}, "data": data, "providers": providers})


@pytest.mark.parametrize("provider", NINE)
def test_public_data_allowed_everywhere_with_a_note(provider):
    d = decide(job("public"), provider)
    assert d.allowed and d.verdict == "allowed" and not d.switches
    assert d.note.startswith("privacy:")
    assert d.tier in d.note and d.terms_url in d.note and "data goes to:" in d.note


def test_internal_runpod_switches_to_secure_cloud():
    d = decide(job("internal"), "runpod")
    assert d.allowed and d.verdict == "allowed-secure"
    assert d.switches == {"runpod_cloud_type": "secure"}
    assert d.tier == "certified-datacenter"
    assert "Secure Cloud" in d.note


def test_internal_vast_switches_to_datacenter_hosts():
    d = decide(job("internal"), "vast")
    assert d.allowed and d.verdict == "allowed-secure"
    assert d.switches == {"vast_datacenter_only": True}
    assert "datacenter" in d.note


def test_internal_with_explicit_community_cloud_is_refused_unless_accepted():
    j = job("internal", runpod={"cloud_type": "community"})
    d = decide(j, "runpod")
    assert not d.allowed and d.verdict == "refused"
    assert "cloud_type is community" in d.reasons[0]
    assert "--accept-privacy-risk" in d.hint
    ok = decide(j, "runpod", accept_risk=True)
    assert ok.allowed and ok.verdict == "accepted-risk" and not ok.switches
    v = decide(job("internal", vast={"datacenter_only": False}), "vast")
    assert not v.allowed and "datacenter_only is false" in v.reasons[0]


@pytest.mark.parametrize("provider", ["colab", "kaggle"])
def test_internal_on_notebooks_allowed_with_a_warning(provider):
    d = decide(job("internal"), provider)
    assert d.allowed and d.verdict == "allowed-warning"
    assert d.warnings and "consumer notebook" in d.warnings[0]


@pytest.mark.parametrize("provider", ["jarvislabs", *sorted(OWN)])
def test_internal_elsewhere_plainly_allowed(provider):
    d = decide(job("internal"), provider)
    assert d.allowed and d.verdict == "allowed" and not d.warnings


@pytest.mark.parametrize("provider", NINE)
def test_confidential_only_own_machine_or_own_cloud_account(provider):
    d = decide(job("confidential"), provider)
    if provider in OWN:
        assert d.allowed and d.verdict == "allowed"
    else:
        assert not d.allowed and d.verdict == "refused"
        assert "confidential data may run only" in d.reasons[0] and provider in d.reasons[0]
        assert "--accept-privacy-risk" in d.hint
        assert "refused:" in d.note


def test_confidential_accepted_risk_is_recorded_and_still_picks_secure_hosts():
    d = decide(job("confidential"), "runpod", accept_risk=True)
    assert d.allowed and d.verdict == "accepted-risk"
    assert d.switches == {"runpod_cloud_type": "secure"}
    assert d.reasons and d.warnings[0].startswith("--accept-privacy-risk")
    rec = d.to_dict()
    assert rec["verdict"] == "accepted-risk" and rec["reasons"]


def test_regions_filter_and_refuse():
    d = decide(job(regions=["eu"]), "sagemaker")
    assert d.allowed and d.regions and all(r.startswith("eu-") for r in d.regions)
    assert "eu-west-2" in d.regions          # prefix rule: eu-west-2 is London, named eu-*
    az = decide(job(regions=["eu"]), "azureml")
    assert az.allowed and "westeurope" in az.regions and "uksouth" not in az.regions
    rp = decide(job(regions=["EU"]), "runpod")
    assert rp.allowed and "EU-SE-1" in rp.regions
    jl = decide(job(regions=["eu"]), "jarvislabs")
    assert not jl.allowed and "none of data.regions" in jl.reasons[0]
    assert decide(job(regions=["eu"]), "jarvislabs", accept_risk=True).verdict == "accepted-risk"


@pytest.mark.parametrize("provider", ["colab", "kaggle"])
def test_regions_refuse_providers_that_cannot_pin_one(provider):
    d = decide(job(regions=["us"]), provider)
    assert not d.allowed and "cannot be pinned" in d.reasons[0]


def test_regions_do_not_limit_the_local_machine():
    d = decide(job("confidential", regions=["eu"]), "local")
    assert d.allowed and d.regions is None


def test_explicit_provider_region_outside_data_regions_is_refused():
    d = decide(job(regions=["eu"], sagemaker={"region": "us-east-1"}), "sagemaker")
    assert not d.allowed and "providers.sagemaker.region us-east-1" in d.reasons[0]
    ok = decide(job(regions=["eu"], vertex={"region": "europe-west4"}), "vertex")
    assert ok.allowed


@pytest.mark.parametrize("cloud,tier,confidential_ok", [
    ("kubernetes", "your-cloud-account", True),
    ("aws", "your-cloud-account", True),
    ("gcp", "your-cloud-account", True),
    ("lambda", "certified-datacenter", False),
    (None, "individual-hosts", False),
])
def test_skypilot_judged_by_its_cloud(cloud, tier, confidential_ok):
    sky = {"cloud": cloud} if cloud else {}
    d = decide(job("confidential", skypilot=sky), "skypilot")
    assert d.tier == tier and d.allowed is confidential_ok
    assert decide(job("public", skypilot=sky), "skypilot").allowed


def test_skypilot_runpod_cloud_uses_runpod_terms_and_switch():
    d = decide(job("internal", skypilot={"cloud": "runpod"}), "skypilot")
    assert d.switches == {"runpod_cloud_type": "secure"}
    no_cloud = decide(job("internal"), "skypilot")
    assert not no_cloud.allowed and "individual hosts" in no_cloud.reasons[0]


def test_skypilot_regions_need_a_pinned_region():
    assert not decide(job(regions=["eu"], skypilot={"cloud": "aws"}), "skypilot").allowed
    assert decide(job(regions=["eu"], skypilot={"cloud": "aws", "region": "eu-west-1"}), "skypilot").allowed
    assert not decide(job(regions=["eu"], skypilot={"cloud": "aws", "region": "us-east-1"}), "skypilot").allowed


def test_render_terms_names_individual_hosts_for_vast():
    rows = dict(render_terms("vast"))
    assert "individual" in rows["tier"] and "individual hosts" in rows["who can reach it"]
    assert rows["terms"].startswith("https://")
    assert "unverified" not in rows["source"]
    assert "unverified" in dict(render_terms("jarvislabs"))["source"]
