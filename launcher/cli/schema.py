"""`launch schema` (the job file's JSON Schema) and `launch validate JOB`."""

from __future__ import annotations

import json


def add_arguments(p, cmd: str) -> None:
    if cmd == "validate":
        p.add_argument("job", help="the job file")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
        p.add_argument("--format", choices=["human", "json"], default="human")


def run(args, out, cmd: str) -> int:
    if cmd == "schema":
        from launcher.job import Job
        schema = Job.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = "launcher job"
        out.result(json.dumps(schema, indent=2))
        return 0
    from launcher.jobfile import load_job
    loaded = load_job(args.job, args.overrides)
    if out.json_mode:
        out.json(loaded.job.model_dump(mode="json"))
    else:
        import yaml
        out.info(f"{args.job}: valid")
        out.result(yaml.safe_dump(loaded.job.model_dump(mode="json"), sort_keys=False).rstrip())
    return 0
