"""colab and kaggle: notebooks valid for nbformat, the Kaggle folder accepted by the kaggle client,
a push to a local stub followed by status and logs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from conftest import TEMPLATE
from launcher.backends import get_backend
from launcher.errors import CapabilityError, CredentialsError
from launcher.jobfile import load_job
from launcher.plan import make_plan
from stubs.kaggle_stub import KaggleStub

SENTINEL = "hf_SENTINELnotebookXXXX"


def plan_for(tmp_path: Path, provider: str, *sets: str):
    loaded = load_job(str(TEMPLATE), [f"output.dir={tmp_path / 'run'}", *sets])
    backend = get_backend(provider)
    return backend, make_plan(loaded, provider, tmp_path / "out" / "bundle", backend=backend)


def test_colab_notebook_valid_with_gpu_metadata_and_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    backend, plan = plan_for(tmp_path, "colab")
    [path] = backend.render(plan, tmp_path / "out")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["accelerator"] == "GPU" and nb.metadata["colab"]["gpuType"] == "T4"
    text = path.read_text()
    assert SENTINEL not in text
    assert "userdata" in text and plan.train_command("/content/run") in text
    assert any("colab.research.google.com" in n for n in plan.notes)


def test_colab_gpu_mapping_and_cpu(tmp_path):
    backend, plan = plan_for(tmp_path, "colab", "compute.gpu=A100-40GB")
    nb = nbformat.read(backend.render(plan, tmp_path / "out")[0], as_version=4)
    assert nb.metadata["colab"]["gpuType"] == "A100"
    # Colab's A100 has 40 GB: an A100-80GB job gets the cheapest GPU at least as capable, with a note
    backend, plan = plan_for(tmp_path / "80", "colab", "compute.gpu=A100-80GB")
    nb = nbformat.read(backend.render(plan, tmp_path / "80" / "out")[0], as_version=4)
    assert nb.metadata["colab"]["gpuType"] == "H100" and any("H100 instead" in n for n in plan.notes)
    backend, plan = plan_for(tmp_path / "cpu", "colab", "compute.gpu=none")
    nb = nbformat.read(backend.render(plan, tmp_path / "cpu" / "out")[0], as_version=4)
    assert "accelerator" not in nb.metadata


def test_colab_is_export_only(tmp_path):
    backend, plan = plan_for(tmp_path, "colab")
    with pytest.raises(CapabilityError, match="export only"):
        backend.submit(plan, tmp_path / "sub")
    assert (tmp_path / "sub" / "tweets-sentiment.ipynb").exists()  # exported all the same
    for verb in ("status", "cancel"):
        with pytest.raises(CapabilityError, match="no job API"):
            getattr(backend, verb)(None)


def test_notebook_cells_unpack_the_same_bundle(tmp_path, monkeypatch):
    """Run the secrets and bundle cells here (WORK pointed at tmp): the bundle comes out intact."""
    monkeypatch.setenv("HF_TOKEN", "")
    backend, plan = plan_for(tmp_path, "colab")
    nb = nbformat.read(backend.render(plan, tmp_path / "out")[0], as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    ns: dict = {}
    exec(code[0].replace('WORK = "/content"', f'WORK = "{tmp_path / "work"}"'), ns)  # noqa: S102
    exec(code[1], ns)  # noqa: S102
    manifest = json.loads((tmp_path / "work" / "bundle" / "MANIFEST.json").read_text())
    assert manifest["bundle_sha256"] == plan.bundle.sha256
    assert (tmp_path / "work" / "bundle" / "train.py").exists()


def test_kaggle_folder_layout_and_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    backend, plan = plan_for(tmp_path, "kaggle")
    backend.render(plan, tmp_path / "out")
    folder = tmp_path / "out" / "kaggle"
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    assert meta["id"] == "tester/tweets-sentiment" and meta["is_private"] is True
    assert meta["enable_gpu"] is True and meta["machine_shape"] == "NvidiaTeslaT4"
    assert meta["enable_internet"] is True and meta["kernel_type"] == "notebook"
    nbformat.validate(nbformat.read(folder / meta["code_file"], as_version=4))
    assert "UserSecretsClient" in (folder / meta["code_file"]).read_text()
    _, cpu = plan_for(tmp_path / "c", "kaggle", "compute.gpu=none", "providers.kaggle.public=true")
    meta2 = backend.metadata(cpu)
    assert meta2["enable_gpu"] is False and "machine_shape" not in meta2 and meta2["is_private"] is False


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch):
    from kagglesdk import kaggle_env
    stub = KaggleStub()
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.LOCAL, stub.url)
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kcfg"))
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", "SENTINELkaggleKEY")
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    yield stub
    stub.close()


def test_kaggle_push_status_logs_against_stub(tmp_path, kaggle_env):
    stub = kaggle_env
    stub.statuses = ["ERROR", "RUNNING", "COMPLETE"]  # the first look (before push) finds no live session
    backend, plan = plan_for(tmp_path, "kaggle")
    handle = backend.submit(plan, tmp_path / "out")
    assert handle.job_id == "tester/tweets-sentiment"
    save = [b for m, p, b, _ in stub.calls if p.endswith("SaveKernel")][0]
    assert save["slug"] == "tester/tweets-sentiment" and save["isPrivate"] is True
    assert save["enableGpu"] is True and save["machineShape"] == "NvidiaTeslaT4"
    assert "SENTINEL" not in json.dumps(save)
    assert backend.status(handle).state == "running"
    st = backend.status(handle)
    assert st.state == "succeeded" and st.finished
    assert list(backend.logs(handle)) == stub.log_lines
    with pytest.raises(CapabilityError, match="session id"):
        backend.cancel(handle)


def test_kaggle_submit_is_idempotent_while_running(tmp_path, kaggle_env):
    kaggle_env.statuses = ["RUNNING"]
    backend, plan = plan_for(tmp_path, "kaggle")
    handle = backend.submit(plan, tmp_path / "out")
    assert handle.extra.get("reused") and "SaveKernel" not in kaggle_env.methods()


def test_kaggle_refused_credentials(tmp_path, kaggle_env):
    kaggle_env.statuses = ["ERROR"]
    backend, plan = plan_for(tmp_path, "kaggle")
    kaggle_env.refuse = 401
    with pytest.raises(CredentialsError, match="refused"):
        backend.submit(plan, tmp_path / "out")


def test_kaggle_without_credentials(tmp_path, monkeypatch):
    for k in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    chk = get_backend("kaggle").check_credentials()
    assert not chk.ok and "KAGGLE_API_TOKEN" in chk.hint and "kaggle kernels push" in chk.hint


def test_kaggle_refuses_a_gpu_it_cannot_match(tmp_path):
    from launcher.errors import JobError
    with pytest.raises(JobError, match=r"compute.gpu: kaggle has no H100.*kaggle offers T4 \(up to 2 per machine\)"):
        plan_for(tmp_path, "kaggle", "compute.gpu=H100")
    backend, plan = plan_for(tmp_path / "k", "kaggle", "compute.gpu=T4", "compute.gpus=2")
    assert backend.metadata(plan)["machine_shape"] == "NvidiaTeslaT4" and not any("instead" in n for n in plan.notes)


def test_notebook_installs_the_resume_uri_client(tmp_path):
    from launcher.backends import get_backend
    from launcher.jobfile import load_job
    from launcher.plan import make_plan
    loaded = load_job(str(TEMPLATE), [f"output.dir={tmp_path / 'run'}"])
    backend = get_backend("kaggle")
    plan = make_plan(loaded, "kaggle", tmp_path / "b", backend=backend, resume_from="s3://runs/x/checkpoints/step-000004")
    [_, nb_path] = backend.render(plan, tmp_path / "out")
    cells = [c.source for c in nbformat.read(nb_path, as_version=4).cells]
    install = next(i for i, c in enumerate(cells) if "requirements.txt" in c)
    run = next(i for i, c in enumerate(cells) if "launcher.train.launch" in c)
    assert "pip install -q boto3" in cells[install] and install < run
    assert "--resume-from s3://runs/x/checkpoints/step-000004" in cells[run]
