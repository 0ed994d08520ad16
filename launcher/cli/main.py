"""`launch`: the root command. Wiring only; each command lives in its own module, imported when
used, so `launch --help` answers without importing pydantic, rich, torch or any cloud SDK."""

from __future__ import annotations

import sys

# command -> module with add_arguments(parser) and run(args, out) -> int
COMMANDS = {
    "run": ("launcher.cli.run", "train or submit a job (the default: `launch JOB`)"),
    "compare": ("launcher.cli.compare", "estimate the whole job's cost on every provider"),
    "privacy": ("launcher.cli.privacy", "show a provider's data-privacy terms"),
    "report": ("launcher.cli.report", "learning curves, final metrics and a diagnosis of a run"),
    "status": ("launcher.cli.jobs", "status of a submitted job"),
    "logs": ("launcher.cli.jobs", "logs of a submitted job"),
    "cancel": ("launcher.cli.jobs", "cancel a submitted job (safe to repeat)"),
    "fetch": ("launcher.cli.jobs", "download a job's outputs into its run directory"),
    "schema": ("launcher.cli.schema", "print the job file's JSON Schema"),
    "validate": ("launcher.cli.schema", "check a job file and print it resolved"),
}

HELP = """usage: launch [--provider P] JOB [--set path=value ...] [--dry-run --out DIR] [options]
       launch COMMAND [...]

One job file, every GPU cloud: train here, or submit the same bundle to a provider.

Run a job:
  launch --provider local JOB            train on this machine (CPU or local GPUs)
  launch --provider runpod JOB           submit to a provider (runpod, vast, jarvislabs, colab,
                                         kaggle, sagemaker, azureml, vertex, skypilot)
  --set dotted.path=value                override any job field (repeatable)
  --dry-run --out DIR                    write plan.json, bundle/ and the provider's request; run nothing
  --resume-from RUN_DIR_OR_URI           continue a run that started anywhere
  --fresh                                start over (the old run directory is kept, renamed)
  --accept-privacy-risk                  run where the data's sensitivity says no (recorded in plan.json)
  --debug                                show tracebacks

Commands:
{commands}

`launch COMMAND --help` tells more.
"""


def _print_help() -> None:
    cmds = "\n".join(f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items() if name != "run")
    sys.stdout.write(HELP.format(commands=cmds))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        _print_help()
        sys.exit(0 if argv else 2)
    if argv[0] in ("--version", "-V"):
        from launcher import __version__
        print(f"launcher {__version__}")
        sys.exit(0)
    cmd = argv[0] if argv[0] in COMMANDS else "run"
    rest = argv[1:] if cmd == argv[0] else argv
    sys.exit(dispatch(cmd, rest))


def dispatch(cmd: str, rest: list[str]) -> int:
    import argparse
    import importlib

    debug = "--debug" in rest
    module = importlib.import_module(COMMANDS[cmd][0])
    parser = argparse.ArgumentParser(prog=f"launch {cmd}" if cmd != "run" else "launch",
                                     description=COMMANDS[cmd][1])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    module.add_arguments(parser, cmd)
    args = parser.parse_args(rest)
    from launcher.errors import LauncherError
    from launcher.output import Output

    out = Output(fmt=getattr(args, "format", "human") or "human", quiet=getattr(args, "quiet", False))
    try:
        return int(module.run(args, out, cmd) or 0)
    except LauncherError as e:
        if debug:
            raise
        from launcher.redact import redact
        print(redact(f"error: {e}"), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place an unexpected failure becomes a line
        if debug:
            raise
        from launcher.errors import first_line
        from launcher.redact import redact
        print(redact(f"error: unexpected {type(e).__name__}: {first_line(e)} (rerun with --debug for the traceback)"),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    main()
