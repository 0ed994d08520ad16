"""Whole-job estimates per provider offer: the rows of `launch compare`, and the estimate every
launch and dry-run records in plan.json. Offline: prices come from providers.yaml."""

from __future__ import annotations

import datetime as dt


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


def build_rows(loaded, providers=None, accept_risk: bool = False, today=None,
               live: bool = False, secure: bool = False) -> tuple[list[dict], object]:
    """One row per provider x matching offer, cheapest first. `secure`: price secure / datacenter
    hosts even where the privacy policy would not switch to them (what a backend will rent)."""
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
        use_secure = secure or bool(dec.switches)
        if prov.kind == "own-machine":
            found, sub, refused = _local_offer(name, c, cat), None, None
        else:
            found, sub, refused = _offers(name, c.gpu, c.gpus, job.data.regions, cat, use_secure)
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
                "quota_warnings": warns, "privacy_tier": dec.tier,
                "verdict": dec.verdict if refused is None else "no-such-gpu",
                "allowed": dec.allowed and refused is None,
                "reasons": dec.reasons + ([refused] if refused else []), "secure": choice.secure,
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
    from launcher.train.launch import count_gpus
    n = count_gpus()
    if n and c.gpu != "none":   # this machine has GPUs: assume they are what the job names
        return [InstanceChoice(name, c.gpu, c.gpus, min(n, c.gpus), f"{n} local GPU(s)", 0.0, None, None,
                               "assumes the local GPUs are the job's compute.gpu", None, offer)]
    return [InstanceChoice(name, "none", c.gpus, 0, offer.instance_type, 0.0, None, None,
                           None if c.gpu == "none" else f"no GPU here: the {c.gpu} is for remote providers",
                           None, offer)]


def _offers(name, gpu, gpus, regions, cat, secure):
    """Cheapest offer per GPU variant, and (substitute note, refusal). A provider lacking the GPU
    gets what a launch there would get: marketplaces and notebooks the cheapest GPU at least as
    capable (launcher.backends.rented.pick_gpu, the policy their backends apply); managed
    platforms refuse (catalog.choose_instance). A refused provider still gets a row, its biggest
    GPU, flagged, so every provider shows in the table."""
    from launcher.backends.rented import pick_gpu
    from launcher.catalog import candidates, choose_instance
    from launcher.errors import UsageError

    found = candidates(name, gpu, gpus, regions, cat, secure)
    sub = refused = None
    if not found and gpu == "none":   # a CPU job on a GPU-only provider: its cheapest GPU
        pool = [ch for g in {o.gpu for o in cat.provider(name).offers if o.gpu != "none"}
                for ch in candidates(name, g, 1, regions, cat, secure)]
        found = sorted(pool, key=lambda x: x.price_per_hour)[:1]
        sub = f"no CPU-only machine here: {found[0].gpu}" if found else None
    elif not found:
        try:
            if cat.provider(name).kind in ("gpu-marketplace", "free-notebook"):
                got, sub = pick_gpu(name, gpu, catalog=cat)
                found = candidates(name, got, gpus, regions, cat, secure) or \
                    candidates(name, got, 1, regions, cat, secure)
            else:
                choose_instance(name, gpu, gpus, regions)
        except (LookupError, UsageError) as e:
            refused = f"a launch here is refused: {e}"
        if not found:
            for g in sorted({o.gpu for o in cat.provider(name).offers if o.gpu != "none"},
                            key=lambda g: -cat.gpus[g].memory_gb):
                found = candidates(name, g, 1, regions, cat, secure)[:1]
                if found:
                    sub = f"shown with its biggest GPU, {g} ({cat.gpus[g].memory_gb:g} GB)"
                    break
    best: dict = {}
    for ch in found:
        best.setdefault((ch.gpu, ch.offer.variant), ch)
    return list(best.values()), sub, refused
