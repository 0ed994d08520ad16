"""`launch compare JOB`: the whole job's estimated time and cost on every provider, with each
provider's privacy tier and the policy's verdict. Offline: prices come from providers.yaml."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


def add_arguments(p, _cmd: str) -> None:
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a job field (repeatable)")
    p.add_argument("--provider", "-p", dest="providers", action="append", default=[],
                   help="only these providers (repeatable; default: all)")
    p.add_argument("--format", choices=["human", "json"], default="human")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a bar chart of the costs")
    p.add_argument("--explain", action="store_true", help="print every assumption behind the estimate")
    p.add_argument("--live", action="store_true",
                   help="use live prices where SkyPilot's catalog cache has them (runpod, vast); labelled live")
    p.add_argument("--accept-privacy-risk", action="store_true",
                   help="judge providers as a launch with --accept-privacy-risk would")
    p.add_argument("--quiet", "-q", action="store_true")


def _busy_warning() -> list[str]:
    """The local estimate assumes the cores are free; say so when they are not."""
    import os
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except OSError:
        return []
    if load > 1.5 * cores:
        return [f"this machine is busy (load {load:.1f} on {cores} cores): a local run will take longer "
                "than estimated, which assumes the cores are free"]
    return []


def _local_gpus() -> int:
    d = Path("/proc/driver/nvidia/gpus")
    return len(list(d.iterdir())) if d.is_dir() else 0


def build_rows(loaded, providers=None, accept_risk: bool = False, today=None,
               live: bool = False) -> tuple[list[dict], object]:
    from launcher import cost, privacy
    from launcher.catalog import load_catalog, price_age_days

    cat = load_catalog()
    job = loaded.job
    c = job.compute
    w = cost.workload(loaded)
    names = providers or list(cat.providers)
    rows = []
    for name in names:
        prov = cat.provider(name)
        dec = privacy.decide(job, name, accept_risk=accept_risk)
        secure = bool(dec.switches)
        if prov.kind == "own-machine":
            found, sub = _local_offer(name, c, cat), None
        else:
            found, sub = _offers(name, c.gpu, c.gpus, job.data.regions, cat, secure)
        for choice in found:
            if choice.gpu == "none":
                secs, how = cost.cpu_seconds(w)
            else:
                secs, how = cost.gpu_seconds(w, cat.gpus[choice.gpu], min(c.gpus, choice.gpus_per_instance) or 1,
                                             c.nodes, job.training.mixed_precision)
            if prov.kind != "own-machine":
                secs += prov.overhead.minutes * 60
                how += f"; + {prov.overhead.minutes:g} min {prov.kind} overhead ({prov.overhead.what})"
            hours = secs / 3600
            warns = cost.quota_warnings(hours, prov, prov.display_name)
            if prov.kind == "own-machine":
                warns += _busy_warning()
            if hours > c.max_hours:
                warns.append(f"{hours:.2f} h exceeds compute.max_hours {c.max_hours:g}: the job would be stopped")
            if choice.gpu != "none":
                need = w.model.total * 16 / 1e9   # fp32 weights + grads + AdamW moments, unsharded (DDP)
                have = cat.gpus[choice.gpu].memory_gb
                if need > have * 0.9:
                    warns.append(f"~{need:.0f} GB for weights, gradients and AdamW states; a {choice.gpu} has {have:g} GB")
            total_ph = choice.price_per_hour * c.nodes
            if c.max_price_per_hour is not None and total_ph > c.max_price_per_hour:
                warns.append(f"${total_ph:.2f}/h is above compute.max_price_per_hour {c.max_price_per_hour:g}")
            o = choice.offer
            rows.append({
                "provider": name, "kind": prov.kind, "gpu": choice.gpu, "gpus": choice.gpus_per_instance,
                "nodes": c.nodes, "offer": choice.instance_type, "variant": o.variant,
                "price_per_hour": round(total_ph, 4),
                "spot_price_per_hour": None if choice.spot_price_per_hour is None else round(choice.spot_price_per_hour * c.nodes, 4),
                "estimated_hours": round(hours, 4),
                "estimated_cost_usd": cost.job_cost(secs, choice.price_per_hour, prov.billing, c.nodes),
                "spot_cost_usd": cost.job_cost(secs, choice.spot_price_per_hour, prov.billing, c.nodes),
                "billing": f"per {prov.billing.granularity_s} s, minimum {prov.billing.minimum_s} s",
                "quota_warnings": warns, "privacy_tier": dec.tier, "verdict": dec.verdict,
                "allowed": dec.allowed, "reasons": dec.reasons, "secure": choice.secure,
                "substitute": sub, "note": choice.note, "time_basis": how,
                "price_range": list(o.price_range) if o.price_range else None,
                "price_source": o.source, "price_verified": o.verified,
                "price_as_of": o.as_of.isoformat(), "price_age_days": price_age_days(o.as_of, today),
                "price_kind": "catalog", "cheapest_allowed": False,
            })
            if live and prov.kind == "gpu-marketplace":
                _apply_live(rows[-1], name, choice, secs, prov, c.nodes)
    def key(r):  # a job that asks for spot capacity is ranked by its spot cost where there is one
        v = r["spot_cost_usd"] if c.spot and r["spot_cost_usd"] is not None else r["estimated_cost_usd"]
        return (v if v is not None else 1e18, r["estimated_hours"])
    rows.sort(key=key)
    best = next((r for r in rows if r["allowed"]), None)
    if best:
        best["cheapest_allowed"] = True
    return rows, w


def _apply_live(row: dict, name: str, choice, secs: float, prov, nodes: int) -> None:
    """Replace a marketplace row's catalog price by the cheapest live one for the same GPU and count
    (secure rows only take instance types named secure)."""
    from launcher import cost
    from launcher.catalog import live_prices

    fit = [lp for lp in live_prices(name) if lp.gpu == choice.gpu and lp.count == choice.gpus_per_instance
           and (not choice.secure or "secure" in lp.instance_type.lower())]
    if not fit:
        return
    lp = min(fit, key=lambda x: x.price_per_hour)
    row.update({"price_per_hour": round(lp.price_per_hour * nodes, 4),
                "spot_price_per_hour": None if lp.spot_price_per_hour is None else round(lp.spot_price_per_hour * nodes, 4),
                "estimated_cost_usd": cost.job_cost(secs, lp.price_per_hour, prov.billing, nodes),
                "spot_cost_usd": cost.job_cost(secs, lp.spot_price_per_hour, prov.billing, nodes),
                "price_kind": "live", "price_source": f"{lp.source} ({lp.instance_type})", "price_verified": True,
                "price_as_of": lp.fetched_at.date().isoformat(), "price_fetched_at": lp.fetched_at.isoformat(),
                "price_age_days": max(0, (dt.date.today() - lp.fetched_at.date()).days)})


def _local_offer(name, c, cat):
    from launcher.catalog import InstanceChoice
    offer = cat.provider(name).offers[0]
    n = _local_gpus()
    if n and c.gpu != "none":   # this machine has GPUs: assume they are what the job names
        return [InstanceChoice(name, c.gpu, c.gpus, min(n, c.gpus), f"{n} local GPU(s)", 0.0, None, None,
                               "assumes the local GPUs are the job's compute.gpu", None, offer)]
    return [InstanceChoice(name, "none", c.gpus, 0, offer.instance_type, 0.0, None, None,
                           None if c.gpu == "none" else f"no GPU here: the {c.gpu} is for remote providers",
                           None, offer)]


def _offers(name, gpu, gpus, regions, cat, secure):
    """Cheapest offer per GPU variant; when the provider lacks the GPU, the cheapest one with at
    least its memory (a labelled substitute)."""
    from launcher.catalog import candidates

    found = candidates(name, gpu, gpus, regions, cat, secure)
    sub = None
    if not found:
        need = cat.gpus[gpu].memory_gb if gpu != "none" else 0
        pool = []
        for g in {o.gpu for o in cat.provider(name).offers if o.gpu != "none"}:
            if cat.gpus[g].memory_gb >= need:
                pool += candidates(name, g, gpus, regions, cat, secure) or candidates(name, g, 1, regions, cat, secure)
        pool.sort(key=lambda x: x.price_per_hour)
        found = pool[:1]
        if found:
            sub = (f"no {'CPU-only machine' if gpu == 'none' else gpu} here: {found[0].gpu} "
                   f"(cheapest with >= {need:g} GB)")
        else:   # nothing big enough: show the biggest, flagged, so every provider has a row
            for g in sorted({o.gpu for o in cat.provider(name).offers if o.gpu != "none"},
                            key=lambda g: -cat.gpus[g].memory_gb):
                found = candidates(name, g, 1, regions, cat, secure)[:1]
                if found:
                    sub = (f"no {gpu} here; its biggest GPU, {g} ({cat.gpus[g].memory_gb:g} GB), "
                           f"may not fit a job sized for {need:g} GB")
                    break
    best: dict = {}
    for ch in found:
        best.setdefault((ch.gpu, ch.offer.variant), ch)
    return list(best.values()), sub


def run(args, out, _cmd: str) -> int:
    from launcher.catalog import load_catalog
    from launcher.errors import UsageError
    from launcher.jobfile import load_job

    loaded = load_job(args.job, args.overrides)
    cat = load_catalog()
    for p in args.providers:
        if p not in cat.providers:
            raise UsageError(f"unknown provider '{p}'", hint=f"choose from: {', '.join(cat.providers)}")
    today = dt.date.today()
    rows, w = build_rows(loaded, args.providers or None, args.accept_privacy_risk, today, args.live)
    dates = sorted({r["price_as_of"] for r in rows if r["kind"] != "own-machine"})
    oldest = max((r["price_age_days"] for r in rows if r["kind"] != "own-machine"), default=0)
    live = sorted({r["price_fetched_at"] for r in rows if r["price_kind"] == "live"})
    prices = (f"prices: catalog in {cat.path}, dated {dates[0]} to {dates[-1]} "
              f"(the oldest {oldest} days old); unverified figures marked *" if dates else "prices: none")
    if args.live:
        prices += (f"; live prices (SkyPilot catalog cache, fetched {live[-1]}) marked ~" if live
                   else "; no live prices: SkyPilot's catalog cache is absent (it refreshes when SkyPilot runs online)")
    if args.plot:
        _plot(rows, Path(args.plot), loaded.job.name)
    if out.json_mode:
        out.json({"job": loaded.job.name, "sensitivity": loaded.job.data.sensitivity,
                  "compute": loaded.job.compute.model_dump(mode="json"), "rows": rows,
                  "assumptions": w.assumptions, "prices": prices,
                  "train_tflop": round(w.train_flops / 1e12, 4), "eval_tflop": round(w.eval_flops / 1e12, 4),
                  "plot": args.plot})
        return 0
    c = loaded.job.compute
    out.info(f"{loaded.job.name}: {c.gpus} x {c.gpu} x {c.nodes} node(s), {loaded.job.data.sensitivity} data; {prices}")
    table, notes = [], []
    for r in rows:
        mark = "★" if r["cheapest_allowed"] else ("✗" if not r["allowed"] else "")
        offer = r["offer"] + (" (secure)" if r["secure"] and r["kind"] != "own-machine" else "")
        star = "~" if r["price_kind"] == "live" else ("" if r["price_verified"] else "*")
        spot = "-" if r["spot_cost_usd"] is None else f"${r['spot_cost_usd']:.2f}"
        table.append([mark, r["provider"], f"{r['gpus']}x {r['gpu']}" if r["gpu"] != "none" else "CPU",
                      offer, f"{r['price_per_hour']:.3f}{star}", f"{r['estimated_hours']:.2f}",
                      f"${r['estimated_cost_usd']:.2f}", spot, r["privacy_tier"], r["verdict"]])
        for n in ([r["substitute"]] if r["substitute"] else []) + ([r["note"]] if r["note"] else []) \
                + r["quota_warnings"] + r["reasons"]:
            line = f"  {r['provider']} {offer}: {n}"
            if line not in notes:
                notes.append(line)
    out.table(["", "provider", "gpu", "offer", "$/h", "hours", "cost", "spot", "privacy", "verdict"],
              table, title="estimated whole-job cost, cheapest first (★ cheapest allowed, ✗ refused by the privacy policy)")
    if notes:
        out.result("notes:")
        for n in notes:
            out.result(n)
    if args.explain:
        out.result("assumptions:")
        for a in w.assumptions:
            out.result(f"  {a}")
        for r in rows:
            out.result(f"  {r['provider']} {r['offer']}: {r['time_basis']}; billed {r['billing']}; "
                       f"price {r['price_source']} as of {r['price_as_of']}"
                       f"{'' if r['price_verified'] else ' (unverified)'}")
    if args.plot:
        out.info(f"wrote {args.plot}")
    return 0


def _plot(rows: list[dict], path: Path, name: str) -> None:
    try:
        import matplotlib
    except ImportError:
        from launcher.errors import MissingDependencyError
        raise MissingDependencyError("matplotlib (for --plot)", "train") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['provider']}\n{r['gpu']}" for r in rows]
    costs = [r["estimated_cost_usd"] or 0 for r in rows]
    colors = ["#2a9d8f" if r["cheapest_allowed"] else ("#bbbbbb" if not r["allowed"] else "#457b9d") for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4))
    ax.bar(range(len(rows)), costs, color=colors)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("estimated job cost (USD)")
    ax.set_title(f"{name}: whole-job cost by provider (grey: refused by privacy policy)")
    for i, r in enumerate(rows):
        ax.text(i, costs[i], f"{r['estimated_hours']:.2f} h", ha="center", va="bottom", fontsize=6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
