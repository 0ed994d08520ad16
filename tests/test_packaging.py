"""The wheel: a plain (non-editable) install must carry providers.yaml inside the package
(launcher/providers.yaml is a link to the root file that the build copies), so that `compare`
and every dry run work with no checkout around."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import MANAGED_SETTINGS, TEMPLATE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "-q", "-w", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("launcher-*.whl")
    site = out / "site"
    with zipfile.ZipFile(whl) as z:  # a pure-Python wheel unpacked is what pip installs
        z.extractall(site)
    return site


def test_wheel_carries_the_catalog(wheel_site):
    shipped = wheel_site / "launcher" / "providers.yaml"
    assert not shipped.is_symlink() and shipped.read_bytes() == (ROOT / "providers.yaml").read_bytes()
    assert (wheel_site / "launcher" / "train" / "main.py").exists()


def run_from(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import launcher; "
            "assert launcher.__file__.startswith(sys.argv[1]), launcher.__file__; "
            "from launcher.cli.main import main; sys.exit(main(sys.argv[2:]))")
    return subprocess.run([sys.executable, "-c", code, str(site), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_compare_and_a_dry_run_from_the_wheel_outside_the_checkout(wheel_site, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(TEMPLATE.read_text())
    r = run_from(wheel_site, tmp_path, "compare", "job.yaml", "--format", "json")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert f"catalog in {wheel_site / 'launcher' / 'providers.yaml'}," in out["prices"]
    assert {row["provider"] for row in out["rows"]} >= {"local", "runpod", "sagemaker", "kaggle"}
    r = run_from(wheel_site, tmp_path, "--provider", "sagemaker", "job.yaml", "--dry-run", *MANAGED_SETTINGS,
                 "--out", str(tmp_path / "plan"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "plan" / "bundle" / "launcher" / "train" / "main.py").exists()
