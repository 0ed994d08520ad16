"""Privacy policy: the job's data sensitivity and regions against each provider's terms.

(Minimal first version: every provider allowed with a generic note. The full policy reads the
terms in providers.yaml.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from launcher.job import Job


@dataclass
class PrivacyDecision:
    provider: str
    tier: str
    allowed: bool
    verdict: str                      # allowed | allowed-secure | allowed-warning | refused | accepted-risk
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    switches: dict = field(default_factory=dict)
    regions: Optional[list[str]] = None
    terms_url: str = ""
    note: str = ""
    hint: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def decide(job: Job, provider: str, accept_risk: bool = False) -> PrivacyDecision:
    if provider == "local":
        return PrivacyDecision(provider, "own-machine", True, "allowed",
                               note="privacy: local: own-machine; the data never leaves this machine.")
    return PrivacyDecision(provider, "unknown", True, "allowed",
                           note=f"privacy: {provider}: terms not yet catalogued.")
