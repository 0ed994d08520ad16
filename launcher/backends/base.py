"""The Backend interface: one implementation per provider, the same few verbs everywhere.

Contract (each provider module states how it meets it):
- `check_credentials()` never raises for missing credentials: it returns a CredentialCheck whose
  hint says exactly what to set.
- `validate(plan)` raises UsageError/CapabilityError for requests the provider cannot serve
  (e.g. nodes > 1 on Runpod), before anything is rendered.
- The GPU (compute.gpu) a provider lacks: the rented and notebook backends (runpod, vast,
  jarvislabs, colab, kaggle) all call `launcher.backends.rented.fit_gpu` from validate(): the
  cheapest GPU the provider offers (providers.yaml) that is at least as capable (memory and peak
  fp16/bf16 TFLOP/s >=, from the catalog's gpus table) is taken, with a plan note; when none is,
  a UsageError at compute.gpu names what the provider offers. The managed platforms (sagemaker,
  azureml, vertex) refuse through `catalog.choose_instance`, whose message lists their GPUs.
- `render(plan, out)` writes the provider's own artifact(s) into `out`, contacting no one and
  needing no credentials; it returns the paths written. `--dry-run` stops here.
- `submit(plan, out)` renders, then sends the job; returns a Handle that `status`, `logs`,
  `cancel` and `fetch` accept. Submitting the same plan twice must not create a second job
  (names or client tokens derive from the plan).
- `cancel(handle)` is safe to call twice, and on a finished job.
- What a provider cannot do is declared in `cannot` as {feature: reason}; callers go through
  `require()`, the one place that turns it into an error.
Secrets (HF_TOKEN, API keys) travel only through the provider's secret mechanism or the
environment at submit time: never into a rendered artifact.
"""

from __future__ import annotations

import abc
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Iterator, Optional

from launcher.errors import CapabilityError

if TYPE_CHECKING:  # pragma: no cover
    from launcher.plan import Plan

FEATURES = ("submit", "status", "logs", "cancel", "fetch", "multi_node", "spot", "resume")
STATES = ("pending", "running", "succeeded", "failed", "cancelled", "unknown")
# Secrets the launcher forwards to a job when set, always by reference, never inlined.
SECRET_ENV = ("HF_TOKEN", "WANDB_API_KEY")


@dataclass
class CredentialCheck:
    ok: bool
    detail: str          # where the credentials were found, or what is missing
    hint: str = ""       # exactly what to set when not ok


@dataclass
class Handle:
    provider: str
    job_id: str
    name: str
    run_dir: str
    submitted_at: float = field(default_factory=time.time)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Handle":
        return cls(**{k: d[k] for k in ("provider", "job_id", "name", "run_dir", "submitted_at", "extra") if k in d})


@dataclass
class JobStatus:
    state: str                 # one of STATES
    detail: str = ""           # the provider's own words
    finished: bool = False


class Backend(abc.ABC):
    name: ClassVar[str]
    extra: ClassVar[str]                 # pip extra that brings the provider's client
    cannot: ClassVar[dict[str, str]] = {}  # feature -> reason

    def __init__(self, provider: str | None = None):
        self.provider = provider or self.name

    # -- declared capabilities ------------------------------------------------------------
    def require(self, feature: str) -> None:
        require(self, feature)

    def can(self, feature: str) -> bool:
        return feature not in self.cannot

    # -- the verbs ----------------------------------------------------------------------------
    @abc.abstractmethod
    def check_credentials(self) -> CredentialCheck: ...

    def validate(self, plan: "Plan") -> None:
        """Refuse what the provider cannot do. Default: multi-node and spot per `cannot`."""
        if plan.job.compute.nodes > 1:
            self.require("multi_node")
        if plan.job.compute.spot and "spot" in self.cannot:
            self.require("spot")

    @abc.abstractmethod
    def render(self, plan: "Plan", out: Path) -> list[Path]: ...

    @abc.abstractmethod
    def submit(self, plan: "Plan", out: Path) -> Handle: ...

    @abc.abstractmethod
    def status(self, handle: Handle) -> JobStatus: ...

    @abc.abstractmethod
    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]: ...

    @abc.abstractmethod
    def cancel(self, handle: Handle) -> None: ...

    @abc.abstractmethod
    def fetch(self, handle: Handle, dest: Path) -> Path: ...


def require(backend: Backend, feature: str, hint: Optional[str] = None) -> None:
    """The one place a declared limitation becomes an error."""
    reason = backend.cannot.get(feature)
    if reason is not None:
        raise CapabilityError(backend.provider, feature.replace("_", "-"), reason, hint=hint)
