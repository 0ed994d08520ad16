"""providers.yaml -> typed offers, billing rules, quotas, regions and privacy terms.

`load_catalog()` reads and validates the file once per process. `choose_instance()` maps a job's
compute request (GPU type, GPUs per node, regions) onto one provider offer: the managed platforms'
instance types, or a marketplace's per-GPU offer times the count.

Where the file lives: `providers.yaml` at the project root (next to the `launcher` package in a
source or editable install). `launcher/providers.yaml` links to it, and a wheel build copies the
file there as package data, so a plain install reads its own copy (tests/test_packaging.py).
`$LAUNCHER_PROVIDERS_YAML` points elsewhere (tests use a tmp copy).

Region matching (used here and by the privacy policy): a wanted entry matches a provider region
when, ignoring case, it equals the region name, is a prefix of it followed by '-' ('eu' matches
'eu-west-1' and 'EU-SE-1', 'europe' matches 'europe-west4'), or equals the region's `geo` tag
('eu' matches Azure's westeurope). Nothing heavy is imported here: pydantic and yaml only.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from launcher.errors import UsageError

KINDS = ("own-machine", "free-notebook", "gpu-marketplace", "managed-platform")
TIERS = ("own-machine", "individual-hosts", "certified-datacenter", "your-cloud-account", "consumer-notebook")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Strict):
    """A fact: where it comes from, when it was read, whether we could confirm it."""

    source: str = Field(..., min_length=3, description="Where the figure comes from.")
    as_of: dt.date = Field(..., description="When the figure was read (YYYY-MM-DD).")
    verified: bool = Field(..., description="False for estimates and figures we could not confirm.")


class GpuSpec(Sourced):
    memory_gb: float = Field(..., gt=0)
    fp32: float = Field(..., gt=0, description="Peak dense fp32 TFLOP/s.")
    fp16: Optional[float] = Field(None, gt=0, description="Peak dense fp16 tensor TFLOP/s.")
    bf16: Optional[float] = Field(None, gt=0, description="Peak dense bf16 tensor TFLOP/s (None: unsupported).")


class Billing(Sourced):
    granularity_s: int = Field(..., gt=0, description="Billed in increments of this many seconds.")
    minimum_s: int = Field(0, ge=0, description="Minimum billed seconds per job.")
    note: str = ""


class Overhead(Sourced):
    minutes: float = Field(..., ge=0, description="Fixed start-up time per job (provisioning, install, downloads).")
    what: str = ""


class SpotTerms(Sourced):
    factor: float = Field(..., gt=0, le=1, description="Spot price as a fraction of on-demand, when no spot price is listed.")
    name: str = "spot"


class Quota(Sourced):
    kind: Literal["session", "week"]
    hours: float = Field(..., gt=0)
    note: str = ""


class Region(_Strict):
    name: str = Field(..., min_length=1)
    geo: str = Field(..., min_length=2, description="Geography tag: us, ca, eu, uk, asia, jp, in, au, ...")


class Regions(Sourced):
    names: list[Region] = Field(default_factory=list)
    selectable: bool = Field(..., description="Whether the user can choose where the job runs.")
    note: str = ""


class PrivacyTerms(Sourced):
    tier: Literal[TIERS]  # type: ignore[valid-type]
    secure_tier: Optional[Literal[TIERS]] = None  # type: ignore[valid-type]
    secure_option: Optional[str] = Field(None, description="What the switch to secure hosts is called.")
    data_location: str = Field(..., min_length=3)
    code_location: str = Field(..., min_length=3)
    access: str = Field(..., min_length=3)
    retention: str = Field(..., min_length=3)
    certifications: list[str] = Field(default_factory=list)
    terms_url: str = Field(..., min_length=3)
    note: str = ""


class Offer(Sourced):
    gpu: str = Field(..., description="A GPU name from launcher.job.KNOWN_GPUS, or 'none' for CPU.")
    variant: Optional[str] = None
    gpus: int = Field(1, ge=0, description="GPUs per instance (managed platforms) or per unit (marketplaces: 1).")
    counts: Optional[list[int]] = Field(None, description="Marketplaces: GPU counts one can rent; price scales per GPU.")
    instance_type: Optional[str] = None
    accelerator: Optional[str] = Field(None, description="Vertex AcceleratorType enum name.")
    price_per_hour: float = Field(..., ge=0, description="USD per hour for `gpus` GPUs (per GPU with counts).")
    spot_price_per_hour: Optional[float] = Field(None, ge=0)
    secure_price_per_hour: Optional[float] = Field(None, ge=0, description="Secure Cloud / datacenter-only price.")
    price_range: Optional[tuple[float, float]] = None
    regions: Optional[list[str]] = Field(None, description="Only in these regions (default: all the provider's).")
    note: str = ""

    @field_validator("gpu")
    @classmethod
    def _gpu_known(cls, v: str) -> str:
        from launcher.job import normalize_gpu
        return normalize_gpu(v)


class Provider(_Strict):
    display_name: str
    kind: Literal[KINDS]  # type: ignore[valid-type]
    billing: Billing
    overhead: Overhead
    spot: Optional[SpotTerms] = None
    quotas: list[Quota] = Field(default_factory=list)
    regions: Regions
    privacy: PrivacyTerms
    offers: list[Offer] = Field(..., min_length=1)


class Catalog(_Strict):
    version: int = 1
    gpus: dict[str, GpuSpec]
    providers: dict[str, Provider]
    path: Optional[str] = None

    @model_validator(mode="after")
    def _gpus_known(self) -> "Catalog":
        for name, p in self.providers.items():
            for o in p.offers:
                if o.gpu != "none" and o.gpu not in self.gpus:
                    raise ValueError(f"providers.{name}: offer GPU {o.gpu} has no entry under gpus")
        return self

    def provider(self, name: str) -> Provider:
        try:
            return self.providers[name]
        except KeyError:
            raise UsageError(f"unknown provider '{name}'",
                             hint=f"providers.yaml lists: {', '.join(self.providers)}") from None

    def oldest_price_date(self, name: str) -> dt.date:
        return min(o.as_of for o in self.provider(name).offers)


class CatalogError(UsageError):
    """providers.yaml is missing or invalid."""


def catalog_path() -> Path:
    env = os.environ.get("LAUNCHER_PROVIDERS_YAML")
    if env:
        return Path(env)
    # In a checkout this link resolves to the root file; in a wheel it is the file itself.
    return (Path(__file__).parent / "providers.yaml").resolve()


def parse_catalog(text: str, origin: str = "providers.yaml") -> Catalog:
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        raw = yaml.load(text, Loader=loader)
    except yaml.YAMLError as e:
        raise CatalogError(f"{origin}: not valid YAML: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(raw, dict):
        raise CatalogError(f"{origin}: expected a mapping at the top")
    raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}  # anchors live under x-*
    raw["path"] = origin
    try:
        return Catalog.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise CatalogError(f"{origin}: {where}: {err['msg']}"
                           + (f" ({e.error_count()} errors)" if e.error_count() > 1 else "")) from None


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> Catalog:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise CatalogError(f"cannot read the provider catalog {p}: {e.strerror}") from None
    return parse_catalog(text, str(p))


def load_catalog(path: Optional[str | Path] = None) -> Catalog:
    """The validated catalog (cached per path and modification time)."""
    p = Path(path) if path else catalog_path()
    try:
        mtime = p.stat().st_mtime
    except OSError:
        raise CatalogError(f"no provider catalog at {p}",
                           hint="set LAUNCHER_PROVIDERS_YAML or reinstall launcher") from None
    return _load(str(p), mtime)


# ---- regions --------------------------------------------------------------------------------

def region_matches(wanted: str, region: Region) -> bool:
    w, n = wanted.strip().lower(), region.name.lower()
    return bool(w) and (w == n or n.startswith(w + "-") or w == region.geo.lower())


def filter_regions(regions: list[Region], wanted: Optional[list[str]]) -> list[Region]:
    """The regions `wanted` allows (all when wanted is empty)."""
    if not wanted:
        return list(regions)
    return [r for r in regions if any(region_matches(w, r) for w in wanted)]


def allowed_regions(provider: Provider, wanted: Optional[list[str]], offer: Optional[Offer] = None) -> list[Region]:
    """The provider's regions (those the offer is sold in) that `wanted` allows; all when None."""
    regs = list(provider.regions.names)
    if offer is not None and offer.regions:
        only = {r.lower() for r in offer.regions}
        regs = [r for r in regs if r.name.lower() in only] or [Region(name=r, geo="?") for r in offer.regions]
    return filter_regions(regs, wanted)


# ---- choosing an offer ----------------------------------------------------------------------

@dataclass
class InstanceChoice:
    provider: str
    gpu: str
    gpus: int                          # GPUs asked per node
    gpus_per_instance: int             # GPUs the chosen instance holds (marketplaces: = gpus)
    instance_type: Optional[str]
    price_per_hour: float              # per node (instance), USD
    spot_price_per_hour: Optional[float]
    accelerator: Optional[str]
    note: Optional[str]
    region: Optional[str]
    offer: Offer
    secure: bool = False

    def to_dict(self) -> dict:
        return {"provider": self.provider, "gpu": self.gpu, "gpus": self.gpus,
                "gpus_per_instance": self.gpus_per_instance, "instance_type": self.instance_type,
                "price_per_hour": round(self.price_per_hour, 4),
                "spot_price_per_hour": None if self.spot_price_per_hour is None else round(self.spot_price_per_hour, 4),
                "accelerator": self.accelerator, "note": self.note, "region": self.region,
                "secure": self.secure, "variant": self.offer.variant,
                "source": self.offer.source, "as_of": self.offer.as_of.isoformat(),
                "verified": self.offer.verified}


def spot_price(provider: Provider, offer: Offer, units: float = 1.0) -> Optional[float]:
    if offer.spot_price_per_hour is not None:
        return offer.spot_price_per_hour * units
    if provider.spot is not None and offer.price_per_hour > 0:
        return offer.price_per_hour * provider.spot.factor * units
    return None


def _gpu_list(offers: list[Offer]) -> str:
    seen: dict[str, int] = {}
    for o in offers:
        if o.gpu != "none":
            top = max(o.counts) if o.counts else o.gpus
            seen[o.gpu] = max(seen.get(o.gpu, 0), top)
    return ", ".join(f"{g} (up to {n})" for g, n in seen.items()) or "CPU only"


def candidates(name: str, gpu: str, gpus: int, regions: Optional[list[str]] = None,
               catalog: Optional[Catalog] = None, secure: bool = False) -> list[InstanceChoice]:
    """Every offer of `name` that fits gpu x gpus (and the regions), cheapest first."""
    cat = catalog or load_catalog()
    prov = cat.provider(name)
    out: list[InstanceChoice] = []
    for o in prov.offers:
        if o.gpu != gpu:
            continue
        regs = allowed_regions(prov, regions, o)
        if regions and not regs:
            continue
        region = regs[0].name if regions and regs else None
        base = (o.secure_price_per_hour if secure and o.secure_price_per_hour is not None
                else o.price_per_hour)
        if o.counts:
            fit = [c for c in o.counts if c >= gpus]
            if not fit:
                continue
            n = min(fit)
            note = None if n == gpus else f"{gpus} GPUs asked; {name} rents {gpu} in counts of {o.counts}: {n} taken"
            sp = None if secure else spot_price(prov, o, n)
            out.append(InstanceChoice(name, gpu, gpus, n, o.instance_type or f"{n}x {o.variant or gpu}",
                                      base * n, sp, o.accelerator, note, region, o, secure))
        else:
            if gpu == "none":
                hold = 0
            elif o.gpus < gpus:
                continue
            else:
                hold = o.gpus
            note = None if hold == gpus or gpu == "none" else (
                f"{gpus} GPU{'s' if gpus > 1 else ''} asked; the smallest {gpu} instance holds {hold}")
            out.append(InstanceChoice(name, gpu, gpus, hold, o.instance_type, base,
                                      spot_price(prov, o), o.accelerator, note, region, o, secure))
    out.sort(key=lambda c: (c.price_per_hour, c.gpus_per_instance))
    return out


def choose_instance(provider: str, gpu: str, gpus: int = 1, regions: Optional[list[str]] = None,
                    *, secure: bool = False, catalog: Optional[Catalog] = None) -> InstanceChoice:
    """The cheapest offer holding `gpus` GPUs of type `gpu` in an allowed region.

    Raises UsageError naming what the provider offers when nothing fits."""
    from launcher.job import normalize_gpu
    cat = catalog or load_catalog()
    prov = cat.provider(provider)
    try:
        gpu = normalize_gpu(gpu)
    except ValueError as e:
        raise UsageError(str(e)) from None
    found = candidates(provider, gpu, gpus, regions, cat, secure)
    if found:
        return found[0]
    same = [o for o in prov.offers if o.gpu == gpu]
    if not same:
        what = "CPU-only machines" if gpu == "none" else f"{gpu} GPUs"
        raise UsageError(f"{provider} offers no {what}; it offers: {_gpu_list(prov.offers)}",
                         hint="set compute.gpu to one of those")
    top = max((max(o.counts) if o.counts else o.gpus) for o in same)
    if top < gpus:
        raise UsageError(f"{provider}: the largest {gpu} machine holds {top} GPUs; {gpus} asked",
                         hint=f"set compute.gpus to {top} or less and add compute.nodes")
    names = sorted({r.name for o in same for r in allowed_regions(prov, None, o)})
    raise UsageError(f"{provider}: no {gpu} offer in regions {', '.join(regions or [])}; "
                     f"it sells {gpu} in: {', '.join(names) or 'unlisted regions'}",
                     hint="widen data.regions or pick another provider")


# ---- live prices (optional) -----------------------------------------------------------------------

@dataclass
class LivePrice:
    gpu: str
    count: int
    price_per_hour: float            # per instance of `count` GPUs
    spot_price_per_hour: Optional[float]
    instance_type: str
    fetched_at: dt.datetime
    source: str


def live_prices(provider: str) -> list[LivePrice]:
    """Prices from SkyPilot's own catalog cache ($SKY_RUNTIME_DIR or ~/.sky/catalogs/v8/<cloud>/
    vms.csv), which SkyPilot refreshes whenever it runs online. Nothing is fetched here; an absent
    cache gives []. Labelled with the file's modification time."""
    import csv

    from launcher.job import normalize_gpu
    roots = [os.environ.get("SKY_RUNTIME_DIR"), str(Path.home())]
    for root in filter(None, roots):
        f = Path(root) / ".sky" / "catalogs" / "v8" / provider / "vms.csv"
        if not f.is_file():
            continue
        fetched = dt.datetime.fromtimestamp(f.stat().st_mtime, dt.timezone.utc)
        out = []
        with f.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    gpu = normalize_gpu(row.get("AcceleratorName") or "")
                    count, price = int(float(row["AcceleratorCount"])), float(row["Price"])
                except (ValueError, KeyError, TypeError):
                    continue
                spot = row.get("SpotPrice")
                spot_v = float(spot) if spot not in (None, "") and float(spot) > 0 else None
                if gpu != "none" and price > 0:
                    out.append(LivePrice(gpu, count, price, spot_v, row.get("InstanceType") or "", fetched, str(f)))
        return out
    return []


def price_age_days(as_of: dt.date, today: Optional[dt.date] = None) -> int:
    return ((today or dt.date.today()) - as_of).days
