"""providers.yaml: validation (every fact sourced and dated), offers, choose_instance, regions."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import ROOT
from launcher.catalog import (CatalogError, Region, catalog_path, choose_instance, load_catalog,
                              parse_catalog, region_matches)
from launcher.errors import UsageError

NINE = {"local", "colab", "kaggle", "vast", "runpod", "jarvislabs", "sagemaker", "azureml", "vertex"}
TEXT = (ROOT / "providers.yaml").read_text()


def test_catalog_loads_all_nine_providers_with_terms():
    cat = load_catalog()
    assert set(cat.providers) == NINE
    assert catalog_path() == ROOT / "providers.yaml"
    for name, p in cat.providers.items():
        assert p.privacy.terms_url and p.privacy.tier
        assert p.offers, name
        assert p.billing.granularity_s >= 1
    assert {p.kind for p in cat.providers.values()} == {"own-machine", "free-notebook", "gpu-marketplace",
                                                        "managed-platform"}
    assert [q.hours for q in cat.providers["kaggle"].quotas] == [9, 30]
    assert cat.providers["vast"].privacy.tier == "individual-hosts"
    assert cat.providers["sagemaker"].privacy.tier == "your-cloud-account"


def test_every_fact_carries_source_date_and_verified():
    cat = load_catalog()
    for name, p in cat.providers.items():
        facts = [p.billing, p.overhead, p.regions, p.privacy, *p.quotas, *p.offers] + ([p.spot] if p.spot else [])
        for f in facts:
            assert f.source and f.as_of.year >= 2026 and isinstance(f.verified, bool), (name, f)
    for g, spec in cat.gpus.items():
        assert spec.source and spec.as_of, g


def _drop_line_key(text: str, key: str, nth_line_contains: str) -> str:
    """Remove `key: value` from the first flow mapping line containing `nth_line_contains`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if nth_line_contains in line:
            new = re.sub(rf",?\s*{key}: (\"[^\"]*\"|[^,}}]+)", "", line, count=1)
            assert new != line
            lines[i] = new
            return "\n".join(lines)
    raise AssertionError(nth_line_contains)


@pytest.mark.parametrize("key", ["source", "as_of", "verified"])
def test_offer_without_source_or_date_is_an_error(tmp_path, key):
    bad = _drop_line_key(TEXT, key, "instance_type: ml.g4dn.xlarge")
    p = tmp_path / "providers.yaml"
    p.write_text(bad)
    with pytest.raises(CatalogError, match=rf"sagemaker.*offers.*{key}"):
        load_catalog(p)


def test_privacy_terms_without_source_is_an_error(tmp_path):
    raw = yaml.safe_load(TEXT)
    raw = {k: v for k, v in raw.items() if not k.startswith("x-")}
    del raw["providers"]["runpod"]["privacy"]["source"]
    with pytest.raises(CatalogError, match="runpod.privacy.source"):
        parse_catalog(yaml.safe_dump(raw))


def test_bad_date_unknown_gpu_and_bad_tier_are_errors():
    raw = yaml.safe_load(TEXT)
    raw = {k: v for k, v in raw.items() if not k.startswith("x-")}
    raw["providers"]["vast"]["billing"]["as_of"] = "last week"
    with pytest.raises(CatalogError, match="vast.billing.as_of"):
        parse_catalog(yaml.safe_dump(raw))
    raw = yaml.safe_load(TEXT)
    raw["providers"]["vast"]["offers"][0]["gpu"] = "B300"
    with pytest.raises(CatalogError, match="unknown GPU"):
        parse_catalog(yaml.safe_dump(raw))
    raw = yaml.safe_load(TEXT)
    raw["providers"]["vast"]["privacy"]["tier"] = "trust-me"
    with pytest.raises(CatalogError, match="tier"):
        parse_catalog(yaml.safe_dump(raw))


def test_missing_catalog_file_is_one_line_error(tmp_path):
    with pytest.raises(CatalogError, match="no provider catalog"):
        load_catalog(tmp_path / "nope.yaml")


@pytest.mark.parametrize("provider,gpu,n,itype,held", [
    ("sagemaker", "T4", 1, "ml.g4dn.xlarge", 1),
    ("sagemaker", "A10G", 1, "ml.g5.xlarge", 1),
    ("sagemaker", "H100", 1, "ml.p5.48xlarge", 8),
    ("sagemaker", "A100-80GB", 8, "ml.p4de.24xlarge", 8),
    ("azureml", "T4", 1, "Standard_NC4as_T4_v3", 1),
    ("azureml", "A100-80GB", 1, "Standard_NC24ads_A100_v4", 1),
    ("azureml", "H100", 8, "Standard_ND96isr_H100_v5", 8),
    ("vertex", "T4", 1, "n1-standard-8", 1),
    ("vertex", "L4", 2, "g2-standard-24", 2),
    ("vertex", "A100-40GB", 1, "a2-highgpu-1g", 1),
    ("vertex", "H100", 8, "a3-highgpu-8g", 8),
])
def test_choose_instance_managed(provider, gpu, n, itype, held):
    c = choose_instance(provider, gpu, n)
    assert (c.instance_type, c.gpus_per_instance) == (itype, held)
    assert c.price_per_hour > 0
    assert (c.note is None) == (held == n)
    if held != n:
        assert f"holds {held}" in c.note


def test_choose_instance_vertex_accelerator_and_sagemaker_enum():
    assert choose_instance("vertex", "T4").accelerator == "NVIDIA_TESLA_T4"
    assert choose_instance("vertex", "A100-80GB").accelerator == "NVIDIA_A100_80GB"
    assert choose_instance("sagemaker", "T4").accelerator is None
    import botocore.session
    shape = botocore.session.get_session().get_service_model("sagemaker").shape_for("TrainingInstanceType")
    for o in load_catalog().providers["sagemaker"].offers:
        assert o.instance_type in shape.enum, o.instance_type
    from google.cloud.aiplatform_v1.types import AcceleratorType
    for o in load_catalog().providers["vertex"].offers:
        assert o.accelerator is None or o.accelerator in AcceleratorType.__members__


def test_choose_instance_marketplace_counts_and_secure_price():
    c = choose_instance("runpod", "H100", 3)
    assert c.gpus_per_instance == 4 and c.price_per_hour == pytest.approx(4 * 2.69)
    assert "counts" in c.note
    s = choose_instance("runpod", "H100", 1, secure=True)
    assert s.price_per_hour == pytest.approx(3.49) and s.secure and s.spot_price_per_hour is None
    assert choose_instance("vast", "RTX4090").spot_price_per_hour == pytest.approx(0.20)
    assert choose_instance("azureml", "T4").spot_price_per_hour == pytest.approx(0.069)


def test_choose_instance_impossible_requests_name_what_exists():
    with pytest.raises(UsageError, match="offers no H200.*T4"):
        choose_instance("sagemaker", "H200")
    with pytest.raises(UsageError, match="largest T4 machine holds 4"):
        choose_instance("azureml", "T4", 8)
    with pytest.raises(UsageError, match="no T4 offer in regions in.*us-central1"):
        choose_instance("vertex", "T4", 1, regions=["in"])
    with pytest.raises(UsageError, match="unknown provider"):
        choose_instance("nimbus", "T4")


def test_region_matching_rules():
    assert region_matches("eu", Region(name="eu-west-1", geo="eu"))
    assert region_matches("EU", Region(name="EU-SE-1", geo="eu"))
    assert region_matches("europe", Region(name="europe-west4", geo="eu"))
    assert region_matches("eu", Region(name="westeurope", geo="eu"))
    assert region_matches("us-east-1", Region(name="us-east-1", geo="us"))
    assert not region_matches("us-east", Region(name="us-east4", geo="us"))
    assert not region_matches("eu", Region(name="uksouth", geo="uk"))
    assert choose_instance("sagemaker", "T4", 1, regions=["eu"]).region == "eu-west-1"
    assert choose_instance("azureml", "T4", 1, regions=["eu"]).region == "westeurope"
    assert choose_instance("sagemaker", "T4", 1).region is None


def test_cpu_offers_on_managed_platforms():
    c = choose_instance("sagemaker", "none")
    assert c.instance_type == "ml.m5.xlarge" and c.gpus_per_instance == 0 and c.note is None
    assert choose_instance("local", "none").price_per_hour == 0
