"""Privacy policy: the job's data sensitivity and regions against each provider's terms.

The terms (tier, where data and code live, who can reach the machine, retention, certifications,
terms URL) come from providers.yaml. The policy, from `data.sensitivity`:

- public: every provider.
- internal: Runpod switches to Secure Cloud and Vast to datacenter hosts (`switches`, verdict
  "allowed-secure"; an explicit `cloud_type: community` / `datacenter_only: false` is refused);
  Colab and Kaggle are allowed with a warning; other individual hosts are refused.
- confidential: only tiers own-machine and your-cloud-account (local, sagemaker, azureml, vertex,
  skypilot on kubernetes/aws/gcp/azure); the rest is refused with the reason.

`data.regions` (matching rules in launcher.catalog) limits the regions a provider may use: a
provider with no allowed region, one whose region cannot be chosen, or an explicit provider region
outside the list is refused. `accept_risk` (--accept-privacy-risk) turns any refusal into verdict
"accepted-risk", recorded in plan.json.

Provider 'skypilot' is judged by `providers.skypilot.cloud`: kubernetes (your own cluster) and
aws/gcp/azure (your account) count as your-cloud-account, lambda/paperspace/fluidstack and other
GPU clouds as certified-datacenter, runpod/vast by their own terms, and no cloud at all (SkyPilot
may pick any enabled cloud, marketplaces included) as individual-hosts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from launcher.job import Job

OVERRIDE_HINT = "pass --accept-privacy-risk to override"
SAFE_FOR_CONFIDENTIAL = ("own-machine", "your-cloud-account")
TIER_WORDS = {
    "own-machine": "your own machine",
    "individual-hosts": "machines of individual hosts",
    "certified-datacenter": "certified datacenters run by the provider",
    "your-cloud-account": "your own cloud account",
    "consumer-notebook": "a consumer notebook service",
}


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


@dataclass
class Terms:
    """The privacy-relevant facts of one provider (or of a SkyPilot cloud)."""

    provider: str
    tier: str
    data_location: str
    code_location: str
    access: str
    retention: str
    certifications: list[str]
    terms_url: str
    note: str = ""
    secure_tier: Optional[str] = None
    secure_option: Optional[str] = None
    regions: list = field(default_factory=list)        # catalog Region objects
    regions_selectable: bool = True
    source: str = ""
    as_of: str = ""
    verified: bool = False


_SKY_CLOUD_TIERS = {
    "kubernetes": ("your-cloud-account", "your own Kubernetes cluster", "https://docs.skypilot.co/en/latest/reference/kubernetes/index.html"),
    "aws": ("your-cloud-account", "your own AWS account", "https://aws.amazon.com/service-terms/"),
    "gcp": ("your-cloud-account", "your own Google Cloud project", "https://cloud.google.com/terms/data-processing-addendum"),
    "azure": ("your-cloud-account", "your own Azure subscription", "https://www.microsoft.com/licensing/terms/product/PrivacyandSecurityTerms"),
}


def terms_for(provider: str, job: Optional[Job] = None) -> Terms:
    """The terms that apply to `provider` (for 'skypilot', to the job's chosen cloud)."""
    from launcher.catalog import load_catalog

    cat = load_catalog()
    if provider == "skypilot":
        cloud = (job.providers.skypilot.cloud if job else None) or ""
        cloud = cloud.lower()
        if cloud in ("runpod", "vast"):
            provider = cloud
        else:
            return _skypilot_terms(cloud)
    p = cat.provider(provider).privacy
    r = cat.provider(provider).regions
    return Terms(provider, p.tier, p.data_location, p.code_location, p.access, p.retention,
                 list(p.certifications), p.terms_url, p.note, p.secure_tier, p.secure_option,
                 list(r.names), r.selectable, p.source, p.as_of.isoformat(), p.verified)


def _skypilot_terms(cloud: str) -> Terms:
    src = "launcher policy for SkyPilot clouds (see launcher/privacy.py)"
    if cloud in _SKY_CLOUD_TIERS:
        tier, where, url = _SKY_CLOUD_TIERS[cloud]
        return Terms("skypilot", tier, f"{where}: machines SkyPilot provisions there",
                     "containers or VMs in that account", "principals of that account or cluster",
                     "SkyPilot tears clusters down after the job (autodown); storage stays", [], url,
                     source=src, as_of="2026-11-29")
    if cloud:
        return Terms("skypilot", "certified-datacenter", f"{cloud}: the GPU cloud's datacenters",
                     "VMs rented from that cloud", f"{cloud} operations staff",
                     "until SkyPilot tears the cluster down", [], "see the cloud's terms of service",
                     source=src, as_of="2026-11-29")
    return Terms("skypilot", "individual-hosts", "any cloud SkyPilot has enabled, marketplaces included",
                 "whatever SkyPilot provisions", "depends on the cloud SkyPilot picks",
                 "until SkyPilot tears the cluster down", [], "set providers.skypilot.cloud to know",
                 note="no cloud pinned: judged as the weakest cloud SkyPilot may pick",
                 source=src, as_of="2026-11-29")


def _explicit_region(job: Job, provider: str) -> Optional[str]:
    s = job.providers
    return {"sagemaker": s.sagemaker.region, "vertex": s.vertex.region,
            "jarvislabs": s.jarvislabs.region, "skypilot": s.skypilot.region}.get(provider)


def _check_regions(job: Job, provider: str, t: Terms, reasons: list[str]) -> Optional[list[str]]:
    from launcher.catalog import Region, filter_regions, region_matches

    wanted = job.data.regions
    if not wanted or t.tier == "own-machine":
        return None
    where = ", ".join(wanted)
    if provider == "skypilot" and not t.regions:
        explicit = _explicit_region(job, provider)
        if not explicit:
            reasons.append(f"data.regions [{where}] needs providers.skypilot.region set to one of them")
            return []
        if not any(region_matches(w, Region(name=explicit, geo="??")) for w in wanted):
            reasons.append(f"providers.skypilot.region {explicit} is outside data.regions [{where}]")
        return [explicit]
    if not t.regions_selectable:
        reasons.append(f"{provider} cannot be pinned to a region and data.regions allows only [{where}]")
        return []

    ok = filter_regions(t.regions, wanted)
    if not ok:
        reasons.append(f"{provider} runs in none of data.regions [{where}] "
                       f"(it offers {', '.join(r.name for r in t.regions)})")
        return []
    explicit = _explicit_region(job, provider)
    if explicit:
        known = next((r for r in t.regions if r.name.lower() == explicit.lower()), None)
        if not any(region_matches(w, known or Region(name=explicit, geo="??")) for w in wanted):
            reasons.append(f"providers.{provider}.region {explicit} is outside data.regions [{where}]")
    return [r.name for r in ok]


def decide(job: Job, provider: str, accept_risk: bool = False) -> PrivacyDecision:
    """The verdict for running `job` on `provider`; see the module docstring for the rules."""
    t = terms_for(provider, job)
    sens = job.data.sensitivity
    reasons: list[str] = []
    warnings: list[str] = []
    switches: dict = {}
    tier, verdict, secure_words = t.tier, "allowed", None

    # internal data (and confidential data run at the user's risk) goes to secure hosts when offered
    if (sens == "internal" or (sens == "confidential" and accept_risk)) and t.tier == "individual-hosts":
        forced = _forced_insecure(job, t.provider)
        if t.secure_option and not forced:
            switches = ({"runpod_cloud_type": "secure"} if t.provider == "runpod"
                        else {"vast_datacenter_only": True} if t.provider == "vast" else {})
            tier, verdict, secure_words = t.secure_tier or "certified-datacenter", "allowed-secure", t.secure_option
        elif sens == "internal":
            why = forced or "it rents machines of individual hosts and has no secure-host switch"
            reasons.append(f"internal data may not run on individual hosts: {why}")
    if sens == "internal" and t.tier == "consumer-notebook":
        verdict = "allowed-warning"
        warnings.append(f"{provider} is a consumer notebook service ({t.data_location}); "
                        "internal data is allowed, but check your organisation allows it")
    if sens == "confidential" and t.tier not in SAFE_FOR_CONFIDENTIAL:
        also = ", even with its secure option" if t.secure_option else ""
        reasons.append(f"confidential data may run only on this machine or in your own cloud account "
                       f"(local, sagemaker, azureml, vertex); {provider} is {t.tier}{also}")
    regions = _check_regions(job, provider, t, reasons)

    allowed = not reasons
    hint = ""
    if reasons:
        if accept_risk:
            allowed, verdict = True, "accepted-risk"
            warnings.append("--accept-privacy-risk: running despite: " + "; ".join(reasons))
        else:
            verdict = "refused"
            hint = OVERRIDE_HINT + (" or choose local, sagemaker, azureml or vertex"
                                    if sens == "confidential" else "")
    d = PrivacyDecision(provider, tier, allowed, verdict, reasons, warnings, switches, regions,
                        t.terms_url, hint=hint)
    d.note = _note(d, t, sens, secure_words)
    return d


def _forced_insecure(job: Job, provider: str) -> Optional[str]:
    if provider == "runpod" and job.providers.runpod.cloud_type == "community":
        return "providers.runpod.cloud_type is community"
    if provider == "vast" and job.providers.vast.datacenter_only is False:
        return "providers.vast.datacenter_only is false"
    return None


def _note(d: PrivacyDecision, t: Terms, sens: str, secure_words: Optional[str]) -> str:
    head = f"privacy: {d.provider}: {d.tier} ({TIER_WORDS.get(d.tier, d.tier)}), {sens} data, verdict {d.verdict}"
    lines = [head]
    if secure_words:
        lines.append(f"  switched to {secure_words} for {sens} data")
    data = t.data_location
    if d.verdict == "allowed-secure" and t.provider == "runpod":
        data = "a Runpod Secure Cloud pod in a T3/T4 datacenter"
    elif d.verdict == "allowed-secure" and t.provider == "vast":
        data = "a Vast.ai datacenter host (Secure Cloud: ISO 27001, Tier 3/4)"
    lines.append(f"  data goes to: {data}")
    lines.append(f"  who can reach it: {t.access}")
    if d.regions:
        lines.append(f"  regions allowed: {', '.join(d.regions)}")
    lines.append(f"  terms: {t.terms_url}")
    if d.reasons:
        lines.append(("  accepted risk: " if d.allowed else "  refused: ") + "; ".join(d.reasons))
    return "\n".join(lines)


def render_terms(provider: str, job: Optional[Job] = None) -> list[tuple[str, str]]:
    """(field, text) rows for `launch privacy PROVIDER`."""
    t = terms_for(provider, job)
    rows = [("tier", f"{t.tier}: {TIER_WORDS.get(t.tier, t.tier)}")]
    if t.secure_option:
        rows.append(("secure option", f"{t.secure_option} -> {t.secure_tier}; chosen automatically for internal data"))
    rows += [("data lives", t.data_location), ("code runs", t.code_location), ("who can reach it", t.access),
             ("after the job", t.retention),
             ("certifications", ", ".join(t.certifications) or "none listed"),
             ("regions", ", ".join(r.name for r in t.regions) if t.regions_selectable and t.regions
              else ("not selectable" if t.tier != "own-machine" else "this machine")),
             ("terms", t.terms_url)]
    if t.note:
        rows.append(("note", t.note))
    rows.append(("source", f"{t.source} (as of {t.as_of}{'' if t.verified else ', unverified'})"))
    rows.append(("policy", policy_line(t)))
    return rows


def policy_line(t: Terms) -> str:
    if t.tier in SAFE_FOR_CONFIDENTIAL:
        return "public, internal and confidential data allowed"
    if t.tier == "individual-hosts" and t.secure_option:
        return "public data; internal data after the switch to secure hosts; confidential refused"
    if t.tier == "consumer-notebook":
        return "public data; internal data with a warning; confidential refused"
    if t.tier == "individual-hosts":
        return "public data only; internal and confidential refused"
    return "public and internal data; confidential refused"
