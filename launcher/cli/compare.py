"""`launch compare JOB`: the whole job's estimated time and cost on every provider, with each
provider's privacy tier and the policy's verdict. Offline: prices come from providers.yaml."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from launcher.estimate import build_rows


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
              table, title="estimated whole-job cost, cheapest first (★ cheapest allowed, ✗ refused: privacy policy or no such GPU)")
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
