"""`launch privacy [PROVIDER] [--job JOB]`: a provider's data-privacy terms, or a one-line summary
of every provider; with --job, the policy's verdict for that job."""

from __future__ import annotations


def add_arguments(p, _cmd: str) -> None:
    p.add_argument("provider", nargs="?", default=None, help="one provider (default: a summary of all)")
    p.add_argument("--job", default=None, help="also judge this job file against the policy")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a job field (with --job)")
    p.add_argument("--accept-privacy-risk", action="store_true", help="judge as with --accept-privacy-risk")
    p.add_argument("--format", choices=["human", "json"], default="human")


def run(args, out, _cmd: str) -> int:
    from launcher import privacy
    from launcher.catalog import load_catalog
    from launcher.errors import UsageError

    cat = load_catalog()
    names = list(cat.providers) + ["skypilot"]
    if args.provider and args.provider not in names:
        raise UsageError(f"unknown provider '{args.provider}'", hint=f"choose from: {', '.join(names)}")
    job = None
    if args.job:
        from launcher.jobfile import load_job
        job = load_job(args.job, args.overrides).job

    if args.provider is None:
        rows = []
        for n in cat.providers:
            t = privacy.terms_for(n, job)
            d = privacy.decide(job, n, args.accept_privacy_risk) if job else None
            rows.append({"provider": n, "tier": t.tier, "secure_option": t.secure_option,
                         "data_location": t.data_location, "terms_url": t.terms_url,
                         "policy": privacy.policy_line(t),
                         **({"verdict": d.verdict, "allowed": d.allowed, "reasons": d.reasons} if d else {})})
        if out.json_mode:
            out.json(rows)
            return 0
        cols = ["provider", "tier", "policy"] + (["verdict"] if job else []) + ["terms"]
        out.table(cols, [[r["provider"], r["tier"], r["policy"]] + ([r["verdict"]] if job else [])
                         + [r["terms_url"]] for r in rows], title="data privacy by provider")
        out.info("`launch privacy PROVIDER` shows the full terms")
        return 0

    rows = privacy.render_terms(args.provider, job)
    decision = privacy.decide(job, args.provider, args.accept_privacy_risk) if job else None
    if out.json_mode:
        out.json({"provider": args.provider, **{k: v for k, v in rows},
                  "decision": decision.to_dict() if decision else None})
        return 0
    width = max(len(k) for k, _ in rows)
    out.result(f"{args.provider}: privacy terms")
    for k, v in rows:
        out.result(f"  {k:<{width}}  {v}")
    if decision:
        out.result("")
        out.result(decision.note)
        for w in decision.warnings:
            out.warn(w)
        if not decision.allowed:
            out.result(f"  ({decision.hint})")
    return 0
