"""What the managed ML platforms (SageMaker, Azure ML, Vertex AI) share: required settings,
the instance choice from the catalog, the region the data allows, and plan-derived job names.

Nothing here imports a cloud SDK.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional

from launcher.errors import UsageError

# Environment every managed job gets; never a secret.
TRAIN_ENV = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
             "TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


@dataclass
class Choice:
    instance_type: str
    gpus_per_instance: int
    gpu: str
    price_per_hour: Optional[float] = None
    spot_price_per_hour: Optional[float] = None
    accelerator: Optional[str] = None
    note: Optional[str] = None
    region: Optional[str] = None
    source: str = "catalog"


def settings(plan, provider: str):
    return getattr(plan.job.providers, provider)


def need(plan, provider: str, fields: dict[str, str]) -> None:
    """Refuse a plan that lacks a required `providers.<p>.<field>`; fields maps name -> example."""
    s = settings(plan, provider)
    for name, example in fields.items():
        if not getattr(s, name):
            raise plan.loaded.error(
                f"providers.{provider}.{name}", f"{provider} needs providers.{provider}.{name}",
                hint=f"add it under providers: {provider}: in the job file, or pass "
                     f"--set providers.{provider}.{name}={example}")


def check_uri(plan, provider: str, name: str, scheme: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    uri = getattr(settings(plan, provider), name)
    if not uri.startswith(scheme) or not uri[len(scheme):].split("/")[0]:
        raise plan.loaded.error(f"providers.{provider}.{name}", f"'{uri}' is not a {scheme} URI",
                                hint=f"e.g. {scheme}my-bucket/launcher")
    bucket, _, prefix = uri[len(scheme):].partition("/")
    return bucket, prefix.strip("/")


def allowed_regions(plan) -> Optional[list[str]]:
    return getattr(plan.privacy, "regions", None) or plan.job.data.regions


def region(plan, provider: str, configured: Optional[str], chosen: Optional[str], default: str) -> str:
    """The region to run in: the configured one if the data allows it, else the catalog's pick
    within data.regions, else the platform default (only when the data names no region)."""
    allowed = allowed_regions(plan)

    def ok(r: str) -> bool:
        return not allowed or any(r == a or r.startswith(a.rstrip("-*") + "-") or r.startswith(a)
                                  for a in allowed)
    if configured:
        if not ok(configured):
            raise plan.loaded.error(f"providers.{provider}.region",
                                    f"region {configured} is outside data.regions ({', '.join(allowed)})",
                                    hint="pick a region the data may be processed in")
        return configured
    for r in (chosen, *(allowed or [])):
        if r and ok(r) and any(c.isdigit() for c in r):
            return r
    if allowed:
        raise plan.loaded.error(f"providers.{provider}.region",
                                f"no {provider} region chosen within data.regions ({', '.join(allowed)})",
                                hint=f"set providers.{provider}.region to one of them")
    return default


def choose(plan, provider: str, override: Optional[str] = None) -> Choice:
    """The instance for compute.gpu x compute.gpus from providers.yaml (launcher.catalog), or the
    explicit override from the provider settings."""
    c = plan.job.compute
    if override:
        return Choice(override, c.gpus if c.gpu != "none" else 0, c.gpu, source="override")
    try:
        from launcher.catalog import choose_instance
    except ImportError:  # pragma: no cover - the catalog ships with the package
        raise UsageError(f"{provider}: no instance catalog available to map compute.gpu={c.gpu}",
                         hint=f"set providers.{provider}.instance_type") from None
    o = choose_instance(provider, c.gpu, c.gpus, allowed_regions(plan))
    return Choice(instance_type=o.instance_type, gpus_per_instance=int(o.gpus_per_instance or 0),
                  gpu=getattr(o, "gpu", c.gpu), price_per_hour=getattr(o, "price_per_hour", None),
                  spot_price_per_hour=getattr(o, "spot_price_per_hour", None),
                  accelerator=getattr(o, "accelerator", None), note=getattr(o, "note", None),
                  region=getattr(o, "region", None))


def record(plan, provider: str, choice: Choice, region_name: str) -> None:
    """Put the choice into plan.offer (plan.json) and its note into plan.notes (printed)."""
    n = plan.job.compute.nodes
    price = choice.spot_price_per_hour if plan.job.compute.spot and choice.spot_price_per_hour else choice.price_per_hour
    plan.offer = {"provider": provider, "instance_type": choice.instance_type, "gpu": choice.gpu,
                  "gpus_per_instance": choice.gpus_per_instance, "instances": n, "region": region_name,
                  "spot": plan.job.compute.spot, "price_per_hour": choice.price_per_hour,
                  "spot_price_per_hour": choice.spot_price_per_hour,
                  "job_price_per_hour": round(price * n, 4) if price else None,
                  "accelerator": choice.accelerator, "source": choice.source}
    if choice.note and choice.note not in plan.notes:
        plan.notes.append(f"{provider}: {choice.note}")


def job_name(plan, provider: str, extra: Any = None, limit: int = 63) -> str:
    """A name derived from the plan (bundle hash, shape, settings): submitting the same plan
    twice finds the first job instead of creating a second."""
    c = plan.job.compute
    key = json.dumps({"p": provider, "bundle": plan.bundle.sha256, "compute": c.model_dump(mode="json"),
                      "settings": settings(plan, provider).model_dump(mode="json"),
                      "resume": plan.resume_from, "extra": extra}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{plan.job.name[: limit - 11].rstrip('-')}-{digest}"
