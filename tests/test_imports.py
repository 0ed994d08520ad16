"""The import guard: the commands people type many times a day import nothing heavy.

Measured with `python -X importtime` in a subprocess (the way the CLI really starts), so a module
that sneaks in torch, a cloud SDK or pandas at import time fails here, with the chain that did it.

Rules:
- `launch --help` and `launch compare JOB`: none of HEAVY.
- importing the CLI's run command and every backend module in the registry: none of HEAVY (the
  submit path loads its SDK inside the functions that talk to the cloud).
- `launch --provider P JOB --dry-run` for every provider, the managed platforms included: none of
  HEAVY. SageMaker, Azure ML and Vertex render their requests as plain data (JSON / YAML); their
  SDKs parse and validate that data on the submit path and in their tests, not in a dry run.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import MANAGED_SETTINGS, ROOT, TEMPLATE

HEAVY = ("torch", "transformers", "datasets", "accelerate", "sky", "boto3", "botocore", "azure",
         "google.cloud", "kaggle", "jarvislabs", "matplotlib", "pandas", "sklearn", "runpod", "vastai")
PROVIDERS = ("local", "colab", "kaggle", "vast", "runpod", "jarvislabs", "sagemaker", "azureml", "vertex")
_LINE = re.compile(r"import time:\s+\d+ \|\s+\d+ \|(\s*)(\S+)")


def heavy_imports(stderr: str) -> dict[str, str]:
    """{heavy package: the outermost module that imported it (its importer chain's top)}."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # importtime prints children before their parent
    for line in stderr.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        depth, name = len(m.group(1)), m.group(2)
        stack.append((depth, name))
        for h in HEAVY:
            if (name == h or name.startswith(h + ".")) and h not in found:
                found[h] = name
    # Name the launcher module that pulled each heavy package in: the nearest launcher.* parent.
    for h in list(found):
        i = next(i for i, (_, name) in enumerate(stack) if name == found[h])
        level = stack[i][0]
        for d, n in stack[i + 1:]:  # walk up the ancestors: each next line that is less indented
            if d < level:
                level = d
                if n.startswith("launcher"):
                    found[h] = f"{found[h]} (via {n})"
                    break
    return found


def run_importtime(args: list[str], cwd=ROOT) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    p = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                       cwd=str(cwd), timeout=300)
    return p, heavy_imports(p.stderr)


def test_parser_sees_heavy_imports():
    """The guard itself works: a child that imports json under a fake heavy name is caught."""
    fake = ("import time:       120 |        120 |       torch.fake\n"
            "import time:       200 |        320 |     other.mod\n"
            "import time:       100 |        100 |     launcher.sibling\n"
            "import time:       300 |        720 |   launcher.something\n"
            "import time:        50 |         50 | pandasx\n")
    assert heavy_imports(fake) == {"torch": "torch.fake (via launcher.something)"}
    p, found = run_importtime(["-c", "import json"])
    assert p.returncode == 0 and found == {}
    p, found = run_importtime(["-c", "import yaml, sqlite3, launcher.job"])
    assert p.returncode == 0 and found == {}
    # and a real one: the training program's data module needs torch at import, and says so
    p, found = run_importtime(["-c", "import launcher.train.data"])
    assert p.returncode == 0 and found["torch"].endswith("(via launcher.train.data)")


def test_help_imports_nothing_heavy():
    p, found = run_importtime(["-m", "launcher.cli.main", "--help"])
    assert p.returncode == 0, p.stderr[-500:]
    assert "usage: launch" in p.stdout
    assert found == {}, f"launch --help imports {found}"


def test_compare_imports_nothing_heavy():
    p, found = run_importtime(["-m", "launcher.cli.main", "compare", str(TEMPLATE)])
    assert p.returncode == 0, p.stderr[-800:]
    assert found == {}, f"launch compare imports {found}"


def test_run_command_and_every_backend_module_import_nothing_heavy():
    from launcher.backends import REGISTRY

    modules = sorted({target.split(":")[0] for target in REGISTRY.values()})
    code = "import launcher.cli.main, launcher.cli.run, launcher.plan\n" + \
        "".join(f"import {m}\n" for m in modules)
    p, found = run_importtime(["-c", code])
    assert p.returncode == 0, p.stderr[-800:]
    assert found == {}, f"importing the backends imports {found}"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_dry_run_imports_nothing_heavy(provider, tmp_path):
    p, found = run_importtime(["-m", "launcher.cli.main", "--provider", provider, str(TEMPLATE),
                               *MANAGED_SETTINGS, "--dry-run", "--out", str(tmp_path / "d")])
    assert p.returncode == 0, p.stderr[-800:]
    assert (tmp_path / "d" / "plan.json").exists()
    assert found == {}, f"launch --provider {provider} --dry-run imports {found}"
