"""colab and kaggle: hosted notebooks that run the same bundle and the same command.

Both get one self-contained notebook (`<job>.ipynb`) with these cells:
1. what it is (job, bundle sha256, privacy note);
2. secrets: read from the platform's own store (Colab: `google.colab.userdata.get`, the Secrets
   panel; Kaggle: `kaggle_secrets.UserSecretsClient`, the Secrets add-on) into the environment;
   never a value in a cell;
3. the bundle: the reproducible .tar.gz (bundle.tar_bundle) embedded as base64 (the demo bundle
   is ~0.1 MB packed); the cell checks its sha256 and MANIFEST's bundle_sha256, then unpacks;
4. install: `pip install -r requirements.txt` (+ `--no-deps -r requirements-nodeps.txt`);
5. run: `plan.train_command(RUN_DIR)` from the bundle folder, the same command as local;
6. learning curves from metrics.jsonl (matplotlib).
Embedding rather than fetching keeps the notebook the only thing to carry, and Kaggle's push API
uploads the code file only (other files in the kernel folder are not sent).

colab has no job API: export only. The notebook's metadata asks for the GPU
(`accelerator: GPU`, `colab.gpuType`); open it with File > Upload notebook.

kaggle: a kernel folder (`kernel-metadata.json` + the notebook), `is_private: true` unless
providers.kaggle.public, `enable_gpu` + `machine_shape: NvidiaTeslaT4` (Kaggle's GPU: T4 x2).
`enable_internet: true` because the install cell fetches the pinned training stack from PyPI
(Kaggle's image carries other versions) and hub models/datasets need it too; with internet off
the run would fail at the install cell. With Kaggle credentials, submit pushes the folder through
the kaggle client and status/logs/fetch follow the kernel; without, the dry-run folder and the
printed `kaggle kernels push -p DIR` do it by hand.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from launcher.backends import rented
from launcher.backends.base import SECRET_ENV, Backend, CredentialCheck, Handle, JobStatus
from launcher.backends.retry import raise_for_fault, with_retries
from launcher.errors import CredentialsError, MissingDependencyError, ProviderError

_EXPORT_ONLY = "colab has no job API: export only (open the notebook in Colab)"
# Colab's gpuType names. providers.yaml prices the free tier (T4); Pro/Pro+ add these (paid in
# compute units), passed to the shared GPU policy (rented.fit_gpu) as offered but unpriced.
_COLAB_GPUS = {"T4": "T4", "L4": "L4", "A100-40GB": "A100", "H100": "H100"}
KAGGLE_SHAPE = "NvidiaTeslaT4"
_CURVES = '''import json, os
import matplotlib.pyplot as plt
recs = [json.loads(l) for l in open(os.path.join(RUN_DIR, "metrics.jsonl")) if l.strip()]
train = [r for r in recs if r.get("type") == "train"]
evals = [r for r in recs if r.get("type") == "eval"]
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
ax[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
ax[0].plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss")
ax[0].set_xlabel("step"); ax[0].legend(); ax[0].set_title("loss")
for k in ("eval_accuracy", "eval_f1_macro", "eval_token_accuracy"):
    if evals and k in evals[0]:
        ax[1].plot([r["step"] for r in evals], [r[k] for r in evals], "o-", label=k)
ax[1].set_xlabel("step"); ax[1].legend(); ax[1].set_title("eval metrics")
plt.tight_layout(); plt.show()
print(open(os.path.join(RUN_DIR, "eval_metrics.json")).read())
'''


def slugify(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def bundle_cell(plan) -> tuple[str, str]:
    """(cell source, sha256 of the embedded .tar.gz)."""
    from launcher.bundle import tar_bundle
    with tempfile.TemporaryDirectory() as td:
        data = tar_bundle(plan.bundle, Path(td) / "bundle.tar.gz").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    b64 = base64.b64encode(data).decode()
    lines = [b64[i:i + 100] for i in range(0, len(b64), 100)]
    src = ("# The bundle (same bytes as every provider gets), embedded so this notebook is all you need.\n"
           "import base64, hashlib, io, json, os, tarfile\n"
           f'BUNDLE_TGZ_SHA256 = "{sha}"\n'
           f'BUNDLE_SHA256 = "{plan.bundle.sha256}"\n'
           "BUNDLE_B64 = (\n" + "\n".join(f'    "{ln}"' for ln in lines) + "\n)\n"
           "raw = base64.b64decode(BUNDLE_B64)\n"
           "assert hashlib.sha256(raw).hexdigest() == BUNDLE_TGZ_SHA256, 'bundle damaged'\n"
           "os.makedirs(BUNDLE, exist_ok=True)\n"
           "with tarfile.open(fileobj=io.BytesIO(raw), mode='r:gz') as t:\n"
           "    t.extractall(BUNDLE, filter='data')\n"
           "assert json.load(open(os.path.join(BUNDLE, 'MANIFEST.json')))['bundle_sha256'] == BUNDLE_SHA256\n"
           "print('bundle', BUNDLE_SHA256[:16], 'unpacked in', BUNDLE)\n")
    return src, sha


def build_notebook(plan, platform: str, work: str, secrets_src: str, metadata: dict):
    try:
        import nbformat
        from nbformat import v4
    except ImportError:
        raise MissingDependencyError("nbformat", platform.lower()) from None

    run_dir = f"{work}/run"
    cmd = plan.train_command(run_dir)
    resume = rented.resume_install(plan)
    bsrc, _ = bundle_cell(plan)
    note = getattr(plan.privacy, "note", "")
    cells = [
        v4.new_markdown_cell(
            f"# {plan.job.name} on {platform}\n\n"
            f"Made by `launch --provider {plan.provider}`: task `{plan.job.task}`, model "
            f"`{plan.job.model.name_or_path}`, bundle sha256 `{plan.bundle.sha256}`.\n\n"
            f"{note}\n\nRun all cells. Secrets (HF_TOKEN, WANDB_API_KEY) come from the "
            f"{'Secrets panel (key icon)' if platform == 'Colab' else 'Secrets add-on (Add-ons > Secrets)'}"
            ", never from a cell."),
        v4.new_code_cell(f'WORK = "{work}"\nBUNDLE = WORK + "/bundle"\nRUN_DIR = "{run_dir}"\n' + secrets_src),
        v4.new_code_cell(bsrc),
        v4.new_code_cell("# The training stack pinned at the versions that ran locally.\n"
                         "!cd {BUNDLE} && python -m pip install -q -r requirements.txt\n"
                         "!cd {BUNDLE} && if [ -s requirements-nodeps.txt ]; then "
                         "python -m pip install -q --no-deps -r requirements-nodeps.txt; fi"
                         + (f"\n# --resume-from {plan.resume_from.split('://')[0]}:// needs its client\n!{resume}"
                            if resume else "")),
        v4.new_code_cell("# The same command every provider runs (it starts `accelerate launch train.py`).\n"
                         f"!cd {{BUNDLE}} && {cmd}"),
        v4.new_code_cell("# Learning curves\n" + _CURVES),
    ]
    nb = v4.new_notebook(cells=cells, metadata=metadata)
    nbformat.validate(nb)
    return nb


def _secrets_src(getter_import: str, getter: str) -> str:
    names = ", ".join(f'"{k}"' for k in SECRET_ENV)
    return ("import os\n"
            f"try:\n    {getter_import}\nexcept ImportError:\n    _get = None\n"
            f"for _k in ({names},):\n"
            "    try:\n"
            f"        _v = {getter}(_k) if _get else None\n"
            "    except Exception:\n"
            "        _v = None\n"
            "    if _v:\n"
            "        os.environ[_k] = _v\n"
            f"print('secrets set:', [k for k in ({names},) if os.environ.get(k)])\n")


class _NotebookBackend(Backend):
    extra = "colab"
    platform = ""
    work = ""

    def notebook_name(self, plan) -> str:
        return f"{plan.job.name}.ipynb"


class ColabBackend(_NotebookBackend):
    name = "colab"
    platform = "Colab"
    work = "/content"
    cannot = {f: _EXPORT_ONLY for f in ("submit", "status", "logs", "cancel", "fetch", "multi_node")}
    cannot["multi_node"] = "a Colab runtime is one machine"

    def check_credentials(self) -> CredentialCheck:
        return CredentialCheck(True, "none needed: the notebook runs in your Google account")

    def validate(self, plan) -> None:
        super().validate(plan)
        rented.fit_gpu(plan, "colab", also=[g for g in _COLAB_GPUS if g != "T4"])
        plan.notes.append(f"colab: open the notebook at https://colab.research.google.com (File > Upload "
                          f"notebook > {self.notebook_name(plan)}), add HF_TOKEN in the Secrets panel if "
                          "the job needs the hub, then Runtime > Run all")

    def render(self, plan, out: Path) -> list[Path]:
        import nbformat
        gpu = rented.chosen_gpu(plan)
        meta: dict = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                      "language_info": {"name": "python"}, "colab": {"provenance": []}}
        if gpu != "none":
            meta["accelerator"] = "GPU"
            meta["colab"]["gpuType"] = _COLAB_GPUS.get(gpu, "T4")
        src = _secrets_src("from google.colab import userdata; _get = userdata.get", "_get")
        nb = build_notebook(plan, self.platform, self.work, src, meta)
        out.mkdir(parents=True, exist_ok=True)
        path = out / self.notebook_name(plan)
        nbformat.write(nb, str(path))
        return [path]

    def submit(self, plan, out: Path) -> Handle:
        path = self.render(plan, out)[0]
        self.require("submit", hint=f"the notebook is at {path}: upload it at https://colab.research.google.com")
        raise AssertionError("unreachable")  # pragma: no cover

    def require(self, feature: str, hint: str | None = None) -> None:
        from launcher.backends.base import require
        if hint is None and self.cannot.get(feature) == _EXPORT_ONLY:
            hint = "export it with: launch --provider colab JOB --dry-run --out DIR"
        require(self, feature, hint)

    def status(self, handle: Handle) -> JobStatus:
        self.require("status")
        raise AssertionError("unreachable")  # pragma: no cover

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        self.require("logs")
        return iter(())  # pragma: no cover

    def cancel(self, handle: Handle) -> None:
        self.require("cancel")

    def fetch(self, handle: Handle, dest: Path) -> Path:
        self.require("fetch")
        return dest  # pragma: no cover


def _kaggle_username() -> str | None:
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    cfg = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle") / "kaggle.json"
    try:
        return json.loads(cfg.read_text()).get("username")
    except (OSError, ValueError):
        return None


_KAGGLE_STATES = {"QUEUED": "pending", "NEW_SCRIPT": "pending", "RUNNING": "running",
                  "COMPLETE": "succeeded", "ERROR": "failed", "CANCEL_REQUESTED": "cancelled",
                  "CANCEL_ACKNOWLEDGED": "cancelled"}


class KaggleBackend(_NotebookBackend):
    name = "kaggle"
    platform = "Kaggle"
    work = "/kaggle/working"
    extra = "kaggle"
    exports_without_credentials = True  # no token: export the kernel folder and print the push command
    cannot = {"multi_node": "a Kaggle notebook session is one machine",
              "cancel": "the kaggle client exposes no session id to cancel with: stop the run on "
                        "kaggle.com/code (Viewer > Stop session)"}

    def check_credentials(self) -> CredentialCheck:
        home = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
        if os.environ.get("KAGGLE_API_TOKEN"):
            return CredentialCheck(True, "KAGGLE_API_TOKEN set")
        if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
            return CredentialCheck(True, "KAGGLE_USERNAME and KAGGLE_KEY set")
        for f in ("access_token", "kaggle.json"):
            if (home / f).is_file():
                return CredentialCheck(True, f"{home / f} found")
        return CredentialCheck(False, "no Kaggle credentials",
                               "set KAGGLE_API_TOKEN (kaggle.com > Settings > API > Generate New Token), "
                               "or export the kernel with --dry-run --out DIR and run `kaggle kernels push -p DIR/kaggle`")

    def kernel_ref(self, plan, username: str | None = None) -> tuple[str, str]:
        s = plan.job.providers.kaggle
        title = s.slug or plan.job.name
        if len(title) < 5:
            title = f"launcher-{title}"
        user = s.username or username or _kaggle_username() or "your-kaggle-username"
        return f"{user}/{slugify(title)}", title

    def metadata(self, plan, username: str | None = None) -> dict:
        c, s = plan.job.compute, plan.job.providers.kaggle
        ref, title = self.kernel_ref(plan, username)
        meta = {"id": ref, "title": title, "code_file": self.notebook_name(plan), "language": "python",
                "kernel_type": "notebook", "is_private": not s.public, "enable_gpu": c.gpu != "none",
                "enable_tpu": False, "enable_internet": True, "dataset_sources": [],
                "competition_sources": [], "kernel_sources": [], "model_sources": []}
        if c.gpu != "none":
            meta["machine_shape"] = KAGGLE_SHAPE
        return meta

    def validate(self, plan) -> None:
        super().validate(plan)
        c = plan.job.compute
        rented.fit_gpu(plan, "kaggle")  # T4 only: a bigger GPU is refused, naming what Kaggle has
        if c.gpus > 2:
            plan.notes.append(f"kaggle: Kaggle's GPU is T4 x2; compute.gpus {c.gpus} becomes {KAGGLE_SHAPE} x2")
        plan.notes.append("kaggle: internet enabled in the kernel: the install cell needs PyPI "
                          "(and the hub, when the job uses it)")
        if plan.job.providers.kaggle.public:
            plan.notes.append("kaggle: providers.kaggle.public is set: the kernel will be visible to everyone")

    def render(self, plan, out: Path, username: str | None = None) -> list[Path]:
        import nbformat
        meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"}}
        src = _secrets_src("from kaggle_secrets import UserSecretsClient; _get = UserSecretsClient().get_secret",
                           "_get")
        nb = build_notebook(plan, self.platform, self.work, src, meta)
        folder = out / "kaggle"
        folder.mkdir(parents=True, exist_ok=True)
        nb_path = folder / self.notebook_name(plan)
        nbformat.write(nb, str(nb_path))
        md = folder / "kernel-metadata.json"
        md.write_text(json.dumps(self.metadata(plan, username), indent=2) + "\n")
        (folder / "PUSH.txt").write_text(
            "Push this kernel by hand (needs Kaggle credentials):\n"
            f"  kaggle kernels push -p {folder}\n"
            "Secrets: add HF_TOKEN in the notebook's Add-ons > Secrets if the job needs the hub.\n")
        return [md, nb_path]

    # -- the kaggle client ---------------------------------------------------------------------
    def api(self):
        """KaggleApi, imported late (importing `kaggle` authenticates and prints a long help
        text when no token is set) and authenticated here so a missing token is our own error."""
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError:
            raise MissingDependencyError("the kaggle client", "kaggle") from None
        api = KaggleApi()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                api.authenticate()
        except SystemExit:
            chk = self.check_credentials()
            raise CredentialsError("kaggle", "the kaggle client found no usable credentials",
                                   hint=chk.hint or "set KAGGLE_API_TOKEN") from None
        return api

    def _call(self, what: str, fn):
        try:
            return with_retries("kaggle", fn, what=what)
        except ValueError as e:  # the client's own checks, and its 401/403 wording
            msg = str(e)
            if "denied" in msg or "Permission" in msg:
                raise CredentialsError("kaggle", f"the credentials for kaggle were refused: {msg[:200]}",
                                       hint="check the kernel id and KAGGLE_API_TOKEN") from None
            raise ProviderError("kaggle", f"{what}: {msg[:300]}") from None

    def submit(self, plan, out: Path) -> Handle:
        api = self.api()
        user = api.config_values.get("username")
        self.render(plan, out, username=user)
        ref = self.metadata(plan, user)["id"]
        handle = Handle("kaggle", ref, plan.job.name, str(plan.run_dir.resolve()),
                        extra={"url": f"https://www.kaggle.com/code/{ref}"})
        try:  # idempotent: a session of this kernel already queued or running is this job
            st = self.status(handle, api=api)
            if st.state in ("pending", "running"):
                handle.extra["reused"] = True
                return handle
        except (ProviderError, Exception):  # noqa: BLE001 - a new kernel has no status yet
            pass
        resp = self._call("push", lambda: api.kernels_push(str(out / "kaggle")))
        if getattr(resp, "error", None):
            raise ProviderError("kaggle", f"push refused: {resp.error}",
                                hint="check kernel-metadata.json (id must be YOUR_USERNAME/slug)")
        handle.extra.update(url=getattr(resp, "url", "") or handle.extra["url"],
                            version=getattr(resp, "version_number", None))
        return handle

    def status(self, handle: Handle, api=None) -> JobStatus:
        api = api or self.api()
        resp = self._call("status", lambda: api.kernels_status(handle.job_id))
        name = getattr(resp.status, "name", str(resp.status))
        state = _KAGGLE_STATES.get(name, "unknown")
        detail = f"kernel {handle.job_id}: {name}"
        if getattr(resp, "failure_message", ""):
            detail += f" ({resp.failure_message})"
        return JobStatus(state, detail, state in ("succeeded", "failed", "cancelled"))

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        api = self.api()
        try:
            for ev in api.kernels_logs_stream(handle.job_id):
                for line in str(ev.get("data", "")).splitlines():
                    yield line
        except Exception as e:  # noqa: BLE001
            raise_for_fault("kaggle", e)
            raise ProviderError("kaggle", f"logs: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from e

    def cancel(self, handle: Handle) -> None:
        self.require("cancel")

    def fetch(self, handle: Handle, dest: Path) -> Path:
        api = self.api()
        dest.mkdir(parents=True, exist_ok=True)
        self._call("fetch", lambda: api.kernels_output(handle.job_id, str(dest), force=True, quiet=True))
        return dest
