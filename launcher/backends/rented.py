"""What the rented-GPU and notebook backends (runpod, vast, jarvislabs, colab, kaggle) share.

GPU policy (`fit_gpu`, called from each of those backends' validate()): the provider's GPUs are
the ones its offers in providers.yaml name (plus, for Colab, the paid-tier GPUs the backend
passes as `also`).
- The provider offers compute.gpu: that GPU.
- It does not: the cheapest offered GPU that is at least as capable by the catalog's `gpus`
  table (memory_gb >= and every peak fp16/bf16 TFLOP/s the requested GPU has >=), with a plan
  note saying so (jarvislabs T4 -> L4, runpod T4 -> RTX4090).
- None is at least as capable: UsageError located at compute.gpu, naming what the provider
  offers (kaggle H100 -> "kaggle offers T4 (up to 2 per machine)").
The choice is recorded in plan.settings["gpu"]; the job itself (and so the bundle, whose hash is
the same everywhere) keeps the GPU it asked for. The managed platforms refuse instead, through
catalog.choose_instance, whose message lists what they offer.

Resume clients (`resume_install`): a remote --resume-from s3:// or gs:// URI is downloaded by the
training program itself (launcher.resume.fetch_uri), which needs boto3 or google-cloud-storage.
The setup step installs it; the bundle's requirements stay the same whatever resume_from is.

Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import Iterable, Optional

# The client launcher.resume needs for each URI scheme.
RESUME_CLIENTS = {"s3": "boto3", "gs": "google-cloud-storage"}


def _capable(cat, have: str, want: str) -> bool:
    h, w = cat.gpus[have], cat.gpus[want]
    if h.memory_gb < w.memory_gb:
        return False
    for k in ("fp16", "bf16"):
        need = getattr(w, k)
        if need is not None and (getattr(h, k) or 0) < need:
            return False
    return True


def offered(provider: str, also: Iterable[str] = (), catalog=None) -> dict[str, Optional[float]]:
    """GPU -> the cheapest catalog price per GPU-hour (None: offered, not priced in the catalog)."""
    from launcher.catalog import load_catalog
    cat = catalog or load_catalog()
    out: dict[str, Optional[float]] = {}
    for o in cat.provider(provider).offers:
        if o.gpu == "none":
            continue
        per_gpu = o.price_per_hour / (1 if o.counts else max(o.gpus, 1))
        out[o.gpu] = per_gpu if out.get(o.gpu) is None else min(out[o.gpu], per_gpu)  # type: ignore[type-var]
    for g in also:
        out.setdefault(g, None)
    return out


def describe(provider: str, also: Iterable[str] = (), catalog=None) -> str:
    """'T4 (up to 2 per machine), L4' : what the provider rents, for messages."""
    from launcher.catalog import load_catalog
    cat = catalog or load_catalog()
    top: dict[str, int] = {}
    for o in cat.provider(provider).offers:
        if o.gpu != "none":
            top[o.gpu] = max(top.get(o.gpu, 0), max(o.counts) if o.counts else o.gpus)
    parts = [f"{g} (up to {n} per machine)" if n > 1 else g for g, n in top.items()]
    parts += [g for g in also if g not in top]
    return ", ".join(parts) or "no GPUs"


def pick_gpu(provider: str, want: str, also: Iterable[str] = (), catalog=None) -> tuple[str, Optional[str]]:
    """(GPU to rent, None when it is the one asked for, else why another); LookupError with the
    reason when the provider has nothing at least as capable. `launch compare` uses it too."""
    from launcher.catalog import load_catalog
    cat = catalog or load_catalog()
    if want == "none" or provider not in cat.providers:  # skypilot: any cloud, SkyPilot's own catalog
        return want, None
    also = tuple(also)
    have = offered(provider, also, cat)
    if want in have:
        return want, None
    fits = [g for g in have if g in cat.gpus and want in cat.gpus and _capable(cat, g, want)]
    if not fits:
        raise LookupError(f"{provider} has no {want} and nothing at least as capable "
                          f"({cat.gpus[want].memory_gb:g} GB); {provider} offers {describe(provider, also, cat)}")
    fits.sort(key=lambda g: (have[g] is None, have[g] or 0.0, cat.gpus[g].memory_gb))
    got = fits[0]
    return got, (f"{provider}: no {want} there; renting {got} instead (the cheapest GPU at least as capable: "
                 f"{cat.gpus[got].memory_gb:g} GB >= {cat.gpus[want].memory_gb:g} GB)")


def fit_gpu(plan, provider: str, also: Iterable[str] = ()) -> str:
    """The GPU this provider will run compute.gpu on (see the module docstring); 'none' stays."""
    want = plan.job.compute.gpu
    try:
        got, note = pick_gpu(provider, want, also)
    except LookupError as e:
        raise plan.loaded.error("compute.gpu", str(e), hint="set compute.gpu to one of those, or compare "
                                                            "providers with `launch compare JOB`") from None
    if want == "none":
        return want
    plan.settings["gpu"] = got
    if note:
        plan.settings["gpu_asked"] = want
        if note not in plan.notes:
            plan.notes.append(note)
    return got


def chosen_gpu(plan) -> str:
    """The GPU fit_gpu settled on (the job's own when validate did not run, e.g. in a test)."""
    return plan.settings.get("gpu") or plan.job.compute.gpu


def resume_install(plan, python: str = "python") -> str:
    """The shell line that installs the client a remote --resume-from URI needs ('' if none)."""
    rf = plan.resume_from or ""
    scheme = rf.split("://", 1)[0] if "://" in rf else ""
    pkg = RESUME_CLIENTS.get(scheme)
    return f"{python} -m pip install -q {pkg}" if pkg else ""
