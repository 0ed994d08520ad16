"""Resume anywhere, preemption, atomic checkpoints.

Fast tests build fake checkpoint folders (the layout launcher.train.state writes) and a moto S3
server on 127.0.0.1; the slow ones train MiniLM on 96 tweets (6 steps, a checkpoint every 2) for real:
  A  uninterrupted                                  (the reference)
  B  SIGTERM after the first checkpoint -> 143, then resumed from a copy of B (another folder)
  C  B resumed from s3:// (uploaded to moto) through the CLI
  D  kill -9 at a random moment (CLI), every checkpoint left must load, the rerun says it resumed
A, B+copy, C and D must end with the same accuracy (within 0.5 points).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TEMPLATE, launch
from launcher.errors import CredentialsError, UsageError
from launcher.train import state as st

# ---------------------------------------------------------------- fake checkpoints (fast)


def fake_ckpt(run: Path, step: int, complete: bool = True, payload: bytes = b"weights") -> Path:
    """A checkpoint folder as save_checkpoint leaves it (COMPLETE lists files and sizes)."""
    d = run / st.CKPT_DIR / st.checkpoint_name(step)
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(payload)
    (d / st.STATE_FILE).write_text(json.dumps({"global_step": step, "epoch": 0, "micro_in_epoch": step}))
    if complete:
        files = {f.name: f.stat().st_size for f in d.iterdir()}
        (d / st.COMPLETE).write_text(json.dumps({"time": 0, "step": step, "files": files}))
    return d


def test_partial_checkpoints_are_skipped_with_a_warning(tmp_path, capsys):
    run = tmp_path / "run"
    fake_ckpt(run, 2)
    fake_ckpt(run, 4, complete=False)                       # killed before COMPLETE
    trunc = fake_ckpt(run, 6)
    (trunc / "model.safetensors").write_bytes(b"w")          # a cut-short copy: size mismatch
    bad = fake_ckpt(run, 8)
    (bad / st.STATE_FILE).write_text("{not json")           # unreadable state
    gone = fake_ckpt(run, 10)
    (gone / "model.safetensors").unlink()                    # file missing
    (run / st.CKPT_DIR / ".tmp-step-000012").mkdir()         # a save in progress
    assert [s for s, _ in st.list_checkpoints(run)] == [2]
    assert st.latest_checkpoint(run).name == "step-000002"
    err = capsys.readouterr().err
    for name in ("step-000004", "step-000006", "step-000008", "step-000010"):
        assert "skipping incomplete checkpoint" in err and name in err
    assert ".tmp-" not in err


def test_find_checkpoint_forms(tmp_path):
    run = tmp_path / "fetched" / "output" / "run"             # a folder fetched back, run two levels down
    fake_ckpt(run, 3)
    newest = fake_ckpt(run, 5)
    assert st.find_checkpoint(tmp_path / "fetched") == newest
    assert st.find_checkpoint(run) == newest
    assert st.find_checkpoint(newest) == newest               # a checkpoint folder itself
    older = run / st.CKPT_DIR / "step-000003"
    assert st.find_checkpoint(older) == older
    (newest / st.COMPLETE).unlink()                           # named but broken -> the run's latest whole one
    assert st.find_checkpoint(newest) == older
    assert st.find_checkpoint(tmp_path / "empty") is None


def test_adapt_position_between_process_counts():
    saved = {"micro_in_epoch": 6, "processes": 2, "global_step": 6}
    assert st.adapt_position(saved, 1)["micro_in_epoch"] == 12   # 6 per process x 2 = 12 batches
    assert st.adapt_position(saved, 4)["micro_in_epoch"] == 3
    assert st.adapt_position({"micro_in_epoch": 5}, 2)["micro_in_epoch"] == 5  # old state: unchanged


def test_resolve_local_and_refusals(tmp_path):
    from launcher.resume import resolve

    run = tmp_path / "run"
    ck = fake_ckpt(run, 4)
    assert resolve(str(run), "local", tmp_path / "new") == str(ck)
    assert resolve(None, "local", tmp_path) is None
    with pytest.raises(UsageError, match="no such folder"):
        resolve(str(tmp_path / "nope"), "local", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no complete checkpoint"):
        resolve(str(tmp_path / "empty"), "local", tmp_path)
    with pytest.raises(UsageError, match="cannot read a folder on this machine"):
        resolve(str(run), "sagemaker", tmp_path)
    with pytest.raises(UsageError, match="unsupported scheme"):
        resolve("ftp://host/x", "local", tmp_path)
    notes: list = []
    assert resolve("s3://b/run", "sagemaker", tmp_path, notes=notes) == "s3://b/run" and not notes
    assert resolve("gs://b/run", "runpod", tmp_path, notes=notes) == "gs://b/run"
    assert notes and "gs://b/run" in notes[0]                 # the job reads it itself: say so
    assert resolve("s3://b/run", "local", tmp_path, dry_run=True) == "s3://b/run"  # dry run fetches nothing


def test_cli_refuses_bad_resume_cleanly(tmp_path):
    r = launch("--provider", "local", str(TEMPLATE), "--resume-from", str(tmp_path / "missing"),
               "--dry-run", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: --resume-from")


# ---------------------------------------------------------------- S3 through moto on 127.0.0.1

@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    srv.stop()


def upload(run: Path, bucket: str, prefix: str) -> None:
    import boto3

    s3 = boto3.client("s3")
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for f in run.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(run)}")


def test_fetch_s3_picks_newest_whole_checkpoint(s3_server, tmp_path):
    from launcher.resume import fetch_uri

    run = tmp_path / "run"
    fake_ckpt(run, 2)
    fake_ckpt(run, 4, payload=b"w" * 100)
    broken = fake_ckpt(run, 6)
    (run / "metrics.jsonl").write_text('{"type": "start", "step": 0}\n')
    upload(run, "ckpts", "jobs/run1")
    import boto3
    boto3.client("s3").put_object(Bucket="ckpts", Key=f"jobs/run1/checkpoints/{broken.name}/model.safetensors",
                                  Body=b"x")  # the newest one was overwritten halfway: manifest says no
    dest = fetch_uri("s3://ckpts/jobs/run1", tmp_path / "dest")
    assert st.find_checkpoint(dest).name == "step-000004"
    assert (dest / "metrics.jsonl").exists()
    # a second fetch (another process of the same job) reuses what is there
    assert fetch_uri("s3://ckpts/jobs/run1/", tmp_path / "dest") == tmp_path / "dest"
    with pytest.raises(UsageError, match="no complete checkpoint"):
        fetch_uri("s3://ckpts/nothing-here", tmp_path / "d2")


def test_fetch_s3_refused_credentials(s3_server, tmp_path, monkeypatch):
    from launcher.resume import fetch_uri

    def denied(*_a, **_k):
        from botocore.exceptions import ClientError
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                           "ResponseMetadata": {"HTTPStatusCode": 403}}, "ListObjectsV2")

    import launcher.resume as rm
    monkeypatch.setattr(rm._S3, "list", denied)
    with pytest.raises(CredentialsError, match="were refused"):
        fetch_uri("s3://ckpts/jobs/run1", tmp_path / "d")


# ---------------------------------------------------------------- real training (slow)

N_TRAIN, N_EVAL = 96, 64
SETS = ["--set", f"data.max_train_samples={N_TRAIN}", "--set", f"data.max_eval_samples={N_EVAL}",
        "--set", "training.epochs=1", "--set", "training.checkpoint_every=2", "--set", "training.seed=7"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    r = launch("--provider", "local", str(TEMPLATE), *SETS, "--dry-run", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out / "bundle"


def train(bundle: Path, out: Path, *extra: str, stop_after_ckpt: bool = False) -> tuple[int, str]:
    """The provider path: `python -m launcher.train.launch` from the bundle folder."""
    env = dict(os.environ, PYTHONPATH=str(bundle), TRANSFORMERS_VERBOSITY="error")
    log = out.with_suffix(".log")
    with log.open("a") as f:
        p = subprocess.Popen([sys.executable, "-m", "launcher.train.launch", "--output-dir", str(out), *extra],
                             cwd=bundle, env=env, stdout=f, stderr=subprocess.STDOUT)
        if stop_after_ckpt:
            while p.poll() is None and not st.list_checkpoints(out, quiet=True):
                time.sleep(0.3)
            p.send_signal(signal.SIGTERM)  # what a platform sends before reclaiming a spot machine
        rc = p.wait(timeout=900)
    return rc, log.read_text()


def accuracy(run: Path) -> float:
    return json.loads((run / "eval_metrics.json").read_text())["eval_accuracy"]


def token_counts(run: Path) -> tuple[int, int, int]:
    s = json.loads((run / "summary.json").read_text())
    return s["examples_seen"], s["real_tokens"], s["padded_tokens"]



@pytest.fixture(scope="module")
def reference_run(bundle, tmp_path_factory):
    run = tmp_path_factory.mktemp("a") / "run"
    rc, log = train(bundle, run)
    assert rc == 0, log[-2000:]
    return run


@pytest.fixture(scope="module")
def reference(reference_run):
    return accuracy(reference_run)


@pytest.fixture(scope="module")
def interrupted(bundle, tmp_path_factory):
    """B: SIGTERM after the first checkpoint, as a platform does before reclaiming a spot machine."""
    run = tmp_path_factory.mktemp("b") / "run"
    rc, log = train(bundle, run, stop_after_ckpt=True)
    return run, rc, log


@pytest.mark.slow
def test_sigterm_checkpoints_exits_143_and_resumes_elsewhere(bundle, reference_run, reference, interrupted, tmp_path):
    run, rc, log = interrupted
    assert rc == st.PREEMPTED_EXIT, log[-2000:]
    assert "Stopped by SIGTERM" in log
    last = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["type"] == "end" and last["status"] == "interrupted"
    ck = st.latest_checkpoint(run)
    assert ck is not None and not (run / "summary.json").exists()
    copy = tmp_path / "copied"                               # moved to another machine / folder
    shutil.copytree(run, copy)
    rc, log = train(bundle, tmp_path / "c", "--resume-from", str(copy))
    assert rc == 0, log[-2000:]
    assert "Resuming from" in log and ck.name in log
    assert abs(accuracy(tmp_path / "c") - reference) <= 0.005
    # The counters kept on the device between log steps survive the stop and the resume exactly.
    assert token_counts(tmp_path / "c") == token_counts(reference_run)
    steps = [json.loads(x)["step"] for x in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["type"] == "checkpoint"]
    assert steps[0] <= json.loads((ck / st.STATE_FILE).read_text())["global_step"]  # history carried over


@pytest.mark.slow
def test_resume_from_s3_through_the_cli(reference, interrupted, s3_server, tmp_path):
    run, rc, _ = interrupted
    assert rc == st.PREEMPTED_EXIT
    upload(run, "runs", "team/b")
    out = tmp_path / "from-s3"
    r = launch("--provider", "local", str(TEMPLATE), *SETS, "--set", f"output.dir={out}",
               "--resume-from", "s3://runs/team/b", env=s3_server)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Resuming from" in r.stderr
    assert abs(accuracy(out) - reference) <= 0.005


@pytest.mark.slow
def test_kill9_at_a_random_moment_never_leaves_a_bad_checkpoint(reference, tmp_path):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "k"
    args = ("--provider", "local", str(TEMPLATE), *SETS, "--set", f"output.dir={out}")
    p = subprocess.Popen([sys.executable, "-m", "launcher.cli.main", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, cwd=str(Path(__file__).parent.parent))
    while p.poll() is None and not (out / st.CKPT_DIR).is_dir():
        time.sleep(0.2)
    time.sleep(random.uniform(0.0, 6.0))                    # anywhere: mid-step, mid-save, mid-rename
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    whole = st.list_checkpoints(out)
    for _, ck in whole:                                      # whatever resume could pick must load
        load_file(str(ck / "model.safetensors"))
        torch.load(ck / "optimizer.bin", weights_only=False)
        st.read_state(ck)
    finished = (out / "summary.json").exists()               # killed after the very end: nothing to resume
    r = launch(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    if whole and not finished:                               # killed inside the first save: starts over
        assert f"Resuming from checkpoint at step {whole[-1][0]}" in r.stderr, r.stderr[-2000:]
    assert abs(accuracy(out) - reference) <= 0.005


# ---------------------------------------------------------------- GCS through a stub of its JSON API

@pytest.fixture
def gcs_stub(monkeypatch):
    """Objects in a dict, served the way the GCS JSON API lists and downloads them."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, unquote, urlparse

    objects: dict[str, bytes] = {}
    status = {"code": 200}

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            u = urlparse(self.path)
            q = parse_qs(u.query)
            if status["code"] != 200:
                return self._send(status["code"], json.dumps({"error": {"code": status["code"],
                                                                         "message": "denied"}}).encode())
            if u.path.startswith("/download/storage/v1/b/"):
                name = unquote(u.path.split("/o/", 1)[1])
                return self._send(200, objects[name], "application/octet-stream")
            if u.path.endswith("/o"):
                prefix = q.get("prefix", [""])[0]
                items = [{"name": k, "size": str(len(v)), "bucket": "b"} for k, v in sorted(objects.items())
                         if k.startswith(prefix)]
                return self._send(200, json.dumps({"kind": "storage#objects", "items": items}).encode())
            self._send(404, b"{}")

        def _send(self, code, body, ctype="application/json"):
            self.send_response(code)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{srv.server_address[1]}")
    yield objects, status
    srv.shutdown()
    srv.server_close()


def test_fetch_gs_through_the_real_client(gcs_stub, tmp_path):
    from launcher.resume import fetch_uri

    objects, status = gcs_stub
    run = tmp_path / "run"
    fake_ckpt(run, 2)
    fake_ckpt(run, 4, complete=False)                        # the newest never finished
    for f in run.rglob("*"):
        if f.is_file():
            objects[f"exp/run/{f.relative_to(run)}"] = f.read_bytes()
    dest = fetch_uri("gs://b/exp/run", tmp_path / "dest")
    assert st.find_checkpoint(dest).name == "step-000002"
    status["code"] = 403
    with pytest.raises(CredentialsError, match="were refused"):
        fetch_uri("gs://b/exp/run", tmp_path / "d2")


def test_stop_flag_goes_over_the_device_when_gloo_is_missing(monkeypatch, capsys):
    """A torch built without gloo: the stop agreement falls back to reducing a device tensor."""
    import torch
    import torch.distributed as dist

    import launcher.train.main as tm

    def no_gloo(**_kw):
        raise RuntimeError("Gloo backend is not available")

    monkeypatch.setattr(signal, "signal", lambda *_a: None)  # keep pytest's own handlers
    monkeypatch.setattr(dist, "new_group", no_gloo)

    class TwoProcesses:
        num_processes, device = 2, torch.device("cpu")

        def reduce(self, t, op):
            assert op == "sum"
            return t + 1  # the other process was told to stop

    stop = tm._Stop()
    assert stop.check(TwoProcesses()) and stop.requested == "SIGTERM"
    assert "no gloo group (Gloo backend is not available)" in capsys.readouterr().out
