"""Plan: the job, the chosen provider's offer, the privacy verdict, and the bundle.

`make_plan` is the one path from a loaded job to something a backend can render or submit; the
dry-run writes `plan.json` from it. Nothing here imports torch or a cloud SDK.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import launcher
from launcher.bundle import Bundle, build_bundle
from launcher.errors import PrivacyError
from launcher.jobfile import LoadedJob, local_data_files
from launcher.job import Job

# The one command every provider runs, from the bundle folder.
TRAIN_ENTRY = "python -m launcher.train.launch"


@dataclass
class Plan:
    provider: str
    loaded: LoadedJob
    bundle: Bundle
    run_dir: Path
    privacy: Any                          # launcher.privacy.PrivacyDecision
    accept_privacy_risk: bool = False
    offer: Optional[dict] = None          # the chosen offer (gpu, instance type, $/h), when priced
    estimate: Optional[dict] = None       # runtime / cost estimate, when computed
    settings: dict = field(default_factory=dict)  # provider decisions (e.g. runpod cloud type)
    notes: list[str] = field(default_factory=list)
    resume_from: Optional[str] = None
    created_at: float = field(default_factory=time.time)

    @property
    def job(self) -> Job:
        return self.loaded.job

    def train_command(self, output_dir: str, resume_from: Optional[str] = None,
                      python: str = "python") -> str:
        """`python -m launcher.train.launch --output-dir DIR`: the same on every provider; it
        starts `accelerate launch train.py` with the cluster shape the platform describes."""
        cmd = [python, "-m", "launcher.train.launch", "--output-dir", output_dir]
        rf = resume_from or self.resume_from
        if rf:
            cmd += ["--resume-from", rf]
        return " ".join(shlex.quote(c) for c in cmd)

    def to_dict(self) -> dict:
        job = self.job.model_dump(mode="json")
        for key, path in local_data_files(self.loaded).items():
            job["data"][key] = str(path)
        return {
            "launcher_version": launcher.__version__,
            "provider": self.provider,
            "job_name": self.job.name,
            "bundle_sha256": self.bundle.sha256,
            "bundle_files": len(self.bundle.files),
            "bundle_bytes": self.bundle.size_bytes,
            "run_dir": str(self.run_dir),
            "command": self.train_command("<run dir>"),
            "privacy": self.privacy.to_dict() if hasattr(self.privacy, "to_dict") else self.privacy,
            "accept_privacy_risk": self.accept_privacy_risk,
            "offer": self.offer,
            "estimate": self.estimate,
            "settings": self.settings,
            "notes": self.notes,
            "resume_from": self.resume_from,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at)),
            "job": job,
        }

    def write(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        p = out / "plan.json"
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p


def make_plan(loaded: LoadedJob, provider: str, bundle_dir: Path, *, accept_privacy_risk: bool = False,
              resume_from: Optional[str] = None, backend=None) -> Plan:
    """Prepare data, check it, check privacy and the provider's limits, then build the bundle."""
    from launcher import preflight, privacy
    from launcher.backends import get_backend

    backend = backend or get_backend(provider)
    preflight.prepare_and_check(loaded)
    decision = privacy.decide(loaded.job, provider, accept_risk=accept_privacy_risk)
    if not decision.allowed:
        raise PrivacyError(f"privacy: {provider} refused for this job: {'; '.join(decision.reasons)}",
                           hint=decision.hint or None)
    plan = Plan(provider=provider, loaded=loaded, bundle=None, run_dir=Path(loaded.job.run_dir()),  # type: ignore[arg-type]
                privacy=decision, accept_privacy_risk=accept_privacy_risk, resume_from=resume_from)
    plan.settings.update(decision.switches)
    backend.validate(plan)
    _estimate(plan)
    plan.bundle = build_bundle(loaded, bundle_dir)
    return plan


def _estimate(plan: Plan) -> None:
    """Record the provider's offer and the whole-job estimate (the row `launch compare` shows for
    this provider, for the GPU the backend settled on) and say it in one line."""
    from launcher.errors import LauncherError
    from launcher.estimate import build_rows

    gpu = plan.settings.get("gpu")
    loaded = plan.loaded
    if gpu and gpu != plan.job.compute.gpu:  # the backend rents another GPU: price that one
        import copy
        loaded = copy.copy(loaded)
        loaded.job = plan.job.model_copy(update={"compute": plan.job.compute.model_copy(update={"gpu": gpu})})
    try:
        secure = plan.settings.get("runpod_cloud_type") == "secure" or bool(plan.settings.get("vast_datacenter_only"))
        rows, _ = build_rows(loaded, [plan.provider], accept_risk=plan.accept_privacy_risk, secure=secure)
    except (LauncherError, KeyError, OSError, ValueError):
        return  # e.g. provider 'skypilot': priced by SkyPilot's own catalog, not ours
    if not rows:
        return
    r = rows[0]
    priced = {k: r[k] for k in ("gpu", "gpus", "nodes", "offer", "secure", "price_per_hour",
                                "spot_price_per_hour", "price_as_of", "price_source", "price_verified")}
    plan.offer = {**priced, **(plan.offer or {})}  # what the backend chose (instance, region) wins
    plan.estimate = {k: r[k] for k in ("estimated_hours", "estimated_cost_usd", "spot_cost_usd", "billing",
                                       "time_basis", "quota_warnings")}
    spot = plan.job.compute.spot and r["spot_cost_usd"] is not None
    cost = r["spot_cost_usd"] if spot else r["estimated_cost_usd"]
    what = "CPU" if r["gpu"] == "none" else \
        f"{r['gpus']}x {r['gpu']} ({r['offer']}{', secure hosts' if r['secure'] else ''})"
    line = (f"estimate: {r['estimated_hours']:.2f} h on {what}"
            + (f" at ${r['spot_price_per_hour' if spot else 'price_per_hour']:.3f}/h{' spot' if spot else ''} "
               f"≈ ${cost:.2f} (catalog price as of {r['price_as_of']})" if cost else ""))
    plan.notes.append(line + "".join(f"; {w}" for w in r["quota_warnings"]))
