"""SageMaker through boto3: botocore's own validation, moto's server on 127.0.0.1, Stubber for stop."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MANAGED_SETTINGS, SMALL, TEMPLATE, launch, managed_plan

SENTINEL = "hf_SENTINEL_do_not_leak_4242"


def make_plan(tmp_path, *sets):
    return managed_plan("sagemaker", tmp_path, *sets)


@pytest.fixture
def backend():
    from launcher.backends.sagemaker import SageMakerBackend
    return SageMakerBackend()


def _shape():
    import botocore.session
    return botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob").input_shape


def _validate(req: dict):
    import botocore.validate
    return botocore.validate.ParamValidator().validate(req, _shape())


def test_instance_type_snapshot_is_botocores_enum():
    """The dry run checks instance types against a snapshot (no botocore import); this fails when
    the installed botocore's CreateTrainingJob enum differs, and prints the snapshot to paste."""
    from launcher.backends.sagemaker import INSTANCE_TYPES_PACKED, instance_types
    live = list(_shape().members["ResourceConfig"].members["InstanceType"].enum)
    if sorted(instance_types()) != sorted(live):  # the snapshot groups by family: order aside
        fams: dict[str, list[str]] = {}
        for t in live:
            fam, size = t[len("ml."):].split(".", 1)
            fams.setdefault(fam, []).append(size)
        packed = " ".join(f"{f}:{','.join(v)}" for f, v in fams.items())
        pytest.fail(f"botocore's InstanceType enum changed: added {sorted(set(live) - set(instance_types()))}, "
                    f"removed {sorted(set(instance_types()) - set(live))}; new INSTANCE_TYPES_PACKED "
                    f"(wrap the lines): {packed}")
    assert len(INSTANCE_TYPES_PACKED.split()) > 10 and "ml.g5.12xlarge" in instance_types()


def test_dry_run_writes_a_valid_create_training_job(tmp_path):
    from launcher.backends.sagemaker import instance_types
    out = tmp_path / "out"
    r = launch("--provider", "sagemaker", str(TEMPLATE), *MANAGED_SETTINGS, "--set", "compute.nodes=2",
               "--set", "compute.gpu=A10G", "--set", "compute.gpus=4", "--dry-run", "--out", str(out),
               env={"HF_TOKEN": SENTINEL, "WANDB_API_KEY": SENTINEL})
    assert r.returncode == 0, r.stderr
    assert "privacy" in r.stderr.lower()
    req = json.loads((out / "create_training_job.json").read_text())
    assert not _validate(req).has_errors()
    rc = req["ResourceConfig"]
    assert rc["InstanceType"] == "ml.g5.12xlarge" and rc["InstanceType"] in instance_types()
    assert rc["InstanceCount"] == 2
    hp = {k: json.loads(v) for k, v in req["HyperParameters"].items()}
    assert hp["sagemaker_program"] == "launcher/train/launch.py"
    assert hp["sagemaker_submit_directory"].endswith("/source/sourcedir.tar.gz")
    assert hp["output-dir"] == req["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    # the program the toolkit runs is in the tarball, next to the train.py it starts
    import tarfile
    names = tarfile.open(out / "sourcedir.tar.gz").getnames()
    assert "launcher/train/launch.py" in names and "train.py" in names and "requirements.txt" in names
    assert req["AlgorithmSpecification"]["TrainingImage"].startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/")
    plan = json.loads((out / "plan.json").read_text())
    assert req["Environment"]["LAUNCHER_BUNDLE_SHA256"] == plan["bundle_sha256"]
    for f in out.rglob("*"):
        if f.is_file() and f.relative_to(out).parts[0] != "bundle":
            assert SENTINEL.encode() not in f.read_bytes(), f


def test_render_writes_what_submit_sends_and_botocore_accepts_it(tmp_path, backend):
    """render is plain data; submit sends exactly that file after botocore's own check, and a
    request botocore rejects stops there (one line, nothing uploaded)."""
    import boto3
    from launcher.backends.sagemaker import check_request
    from launcher.errors import UsageError
    plan = make_plan(tmp_path, "compute.nodes=2", "compute.spot=true")
    path, tarball = backend.render(plan, tmp_path / "out")
    req = json.loads(path.read_text())
    assert req == backend.request(plan) and tarball.name == "sourcedir.tar.gz"
    sm = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    check_request(sm, req)  # accepted
    for bad in ({**req, "ResourceConfig": {**req["ResourceConfig"], "InstanceCount": "2"}},
                {k: v for k, v in req.items() if k != "RoleArn"}, {**req, "Bogus": 1}):
        with pytest.raises(UsageError, match="CreateTrainingJob request is invalid"):
            check_request(sm, bad)


def test_spot_and_runtime(tmp_path, backend):
    plan = make_plan(tmp_path, "compute.spot=true", "compute.max_hours=4")
    req = backend.request(plan)
    assert not _validate(req).has_errors()
    assert req["EnableManagedSpotTraining"] is True
    stop = req["StoppingCondition"]
    assert stop["MaxRuntimeInSeconds"] == 4 * 3600 and stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"]
    assert plan.offer["offer"] == plan.settings["sagemaker_instance_type"] == "ml.g4dn.xlarge"
    assert plan.offer["spot_price_per_hour"] and any("spot" in n for n in plan.notes if n.startswith("estimate:"))


def test_bad_requests_are_one_line_exit_2(tmp_path):
    cases = [
        (["--set", "providers.sagemaker.role_arn="], "providers.sagemaker.role_arn"),
        (["--set", "providers.sagemaker.bucket=example-bucket"], "not a s3:// URI"),
        (["--set", "compute.gpu=H100", "--set", "compute.gpus=16"], "largest H100 machine holds 8"),
        (["--set", "compute.gpu=RTX4090"], "sagemaker offers no RTX4090"),
        (["--set", "providers.sagemaker.instance_type=ml.z9.huge"], "no training instance type ml.z9.huge"),
    ]
    for extra, needle in cases:
        r = launch("--provider", "sagemaker", str(TEMPLATE), *MANAGED_SETTINGS, *extra, "--dry-run",
                   "--out", str(tmp_path / "x"))
        assert r.returncode == 2, (extra, r.stderr)
        assert needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_fewer_gpus_than_the_instance_holds_says_so(tmp_path, backend):
    plan = make_plan(tmp_path, "compute.gpu=A100-40GB", "compute.gpus=2")
    assert plan.offer["offer"] == plan.settings["sagemaker_instance_type"] == "ml.p4d.24xlarge"
    assert any("8" in n for n in plan.notes if n.startswith("sagemaker:")), plan.notes


# -- against moto's server on 127.0.0.1 ----------------------------------------------------------
@pytest.fixture(scope="module")
def moto_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def aws(moto_url, monkeypatch):
    for k, v in {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    import boto3
    s3 = boto3.client("s3", region_name="us-east-1")
    try:
        s3.create_bucket(Bucket="example-bucket")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    return moto_url


def test_submit_status_logs_fetch_against_moto(tmp_path, backend, aws):
    import boto3
    assert backend.check_credentials().ok
    plan = make_plan(tmp_path, "compute.nodes=2")
    h = backend.submit(plan, tmp_path / "sub")
    sm = boto3.client("sagemaker", region_name="us-east-1")
    d = sm.describe_training_job(TrainingJobName=h.job_id)
    assert d["ResourceConfig"]["InstanceCount"] == 2 and d["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    names = [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]]
    assert h.job_id in names
    # the bundle in S3 is the tarball the request points at
    src = json.loads(d["HyperParameters"]["sagemaker_submit_directory"])
    key = src[len("s3://example-bucket/"):]
    body = boto3.client("s3", region_name="us-east-1").get_object(Bucket="example-bucket", Key=key)["Body"].read()
    assert body == (tmp_path / "sub" / "sourcedir.tar.gz").read_bytes()
    # submitting the same plan again finds that job
    h2 = backend.submit(plan, tmp_path / "sub")
    assert h2.job_id == h.job_id and h2.extra.get("reused")
    assert [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]].count(h.job_id) == 1

    st = backend.status(h)
    assert st.state == "succeeded" and st.finished  # moto completes jobs at once

    logs = boto3.client("logs", region_name="us-east-1")
    group = "/aws/sagemaker/TrainingJobs"
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    now = int(time.time() * 1000)
    for host in ("algo-1", "algo-2"):
        stream = f"{h.job_id}/{host}-1700000000"
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": now, "message": f"{host} epoch 1 loss 0.5"},
            {"timestamp": now + 1, "message": f"{host} done"}])
    lines = list(backend.logs(h))
    assert "[algo-1] algo-1 epoch 1 loss 0.5" in lines and "[algo-2] algo-2 done" in lines

    s3 = boto3.client("s3", region_name="us-east-1")
    ck = h.extra["checkpoints"][len("s3://example-bucket/"):]
    s3.put_object(Bucket="example-bucket", Key=f"{ck}/metrics.jsonl", Body=b'{"type": "end", "step": 6}\n')
    s3.put_object(Bucket="example-bucket", Key=f"{ck}/checkpoints/step-000006/state.json", Body=b"{}")
    dest = backend.fetch(h, tmp_path / "fetched")
    assert (dest / "metrics.jsonl").read_text().startswith('{"type": "end"')
    assert (dest / "checkpoints" / "step-000006" / "state.json").exists()


def _stubbed(backend, monkeypatch):
    import boto3
    from botocore.stub import Stubber
    client = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    stubber = Stubber(client)
    monkeypatch.setattr(backend, "client", lambda service, region: client)
    return stubber


def _describe(status):
    return {"TrainingJobName": "j", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/j",
            "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m"}, "TrainingJobStatus": status,
            "SecondaryStatus": "Training" if status == "InProgress" else "Stopped",
            "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "ResourceConfig": {"InstanceCount": 1, "VolumeSizeInGB": 10},
            "StoppingCondition": {}, "CreationTime": 0}


def test_cancel_is_safe_twice(backend, monkeypatch):
    from launcher.backends.base import Handle
    stubber = _stubbed(backend, monkeypatch)
    h = Handle("sagemaker", "j", "tweets", "/tmp/none", extra={"region": "us-east-1"})
    stubber.add_response("describe_training_job", _describe("InProgress"), {"TrainingJobName": "j"})
    stubber.add_response("stop_training_job", {}, {"TrainingJobName": "j"})
    stubber.add_response("describe_training_job", _describe("Stopping"), {"TrainingJobName": "j"})
    stubber.add_response("describe_training_job", _describe("Stopped"), {"TrainingJobName": "j"})
    with stubber:
        backend.cancel(h)
        backend.cancel(h)  # Stopping: no second StopTrainingJob
        backend.cancel(h)  # Stopped: nothing to do
        stubber.assert_no_pending_responses()


def test_refused_credentials_name_the_fix(backend, monkeypatch):
    from launcher.backends.base import Handle
    from launcher.errors import CredentialsError
    stubber = _stubbed(backend, monkeypatch)
    stubber.add_client_error("describe_training_job", "UnrecognizedClientException",
                             "The security token included in the request is invalid.", 403)
    with stubber, pytest.raises(CredentialsError) as e:
        backend.status(Handle("sagemaker", "j", "tweets", "/tmp/none", extra={"region": "us-east-1"}))
    assert "credentials for sagemaker were refused" in str(e.value) and "AWS_PROFILE" in str(e.value)


def test_no_credentials_is_a_check_not_a_crash(backend, monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    c = backend.check_credentials()
    assert not c.ok and "aws configure" in c.hint


def test_resume_from_one_checkpoint_is_copied_into_the_jobs_prefix(tmp_path, backend, aws):
    """--resume-from s3://.../checkpoints/step-N: the job keeps its own checkpoint prefix, and submit
    copies that checkpoint there as checkpoints/step-N, so /opt/ml/checkpoints holds it at start."""
    import boto3
    s3 = boto3.client("s3", region_name="us-east-1")
    old = "old/jobs/prev/checkpoints"
    files = {"COMPLETE": b"{}", "trainer_state.json": b'{"global_step": 4}', "model.safetensors": b"w" * 10}
    for name, body in files.items():
        s3.put_object(Bucket="example-bucket", Key=f"{old}/checkpoints/step-000004/{name}", Body=body)
    s3.put_object(Bucket="example-bucket", Key=f"{old}/checkpoints/step-000008/COMPLETE", Body=b"{}")
    s3.put_object(Bucket="example-bucket", Key=f"{old}/metrics.jsonl", Body=b'{"type": "train", "step": 4}\n')
    uri = f"s3://example-bucket/{old}/checkpoints/step-000004"
    from launcher.jobfile import load_job
    from launcher.plan import make_plan as mk
    overrides = [s for s in MANAGED_SETTINGS + SMALL if s != "--set"] + [f"output.dir={tmp_path / 'run'}"]
    plan = mk(load_job(str(TEMPLATE), overrides), "sagemaker", tmp_path / "bundle", resume_from=uri)
    req = backend.request(plan)
    ckpt = req["CheckpointConfig"]["S3Uri"]
    assert ckpt != uri and ckpt.endswith(f"/jobs/{req['TrainingJobName']}/checkpoints")
    assert any("step-000004" in n and "copies" in n for n in plan.notes)
    h = backend.submit(plan, tmp_path / "sub")
    base = ckpt[len("s3://example-bucket/"):]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="example-bucket", Prefix=base + "/")["Contents"]}
    assert keys == {f"{base}/checkpoints/step-000004/{n}" for n in files} | {f"{base}/metrics.jsonl"}
    body = s3.get_object(Bucket="example-bucket", Key=f"{base}/checkpoints/step-000004/model.safetensors")["Body"]
    assert body.read() == files["model.safetensors"] and h.extra["checkpoints"] == ckpt


def test_resume_from_an_incomplete_checkpoint_is_refused(tmp_path, backend, aws):
    import boto3
    from launcher.errors import UsageError
    from launcher.jobfile import load_job
    from launcher.plan import make_plan as mk
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket="example-bucket", Key="half/checkpoints/step-000002/model.safetensors", Body=b"w")
    overrides = [s for s in MANAGED_SETTINGS + SMALL if s != "--set"] + [f"output.dir={tmp_path / 'run'}"]
    plan = mk(load_job(str(TEMPLATE), overrides), "sagemaker", tmp_path / "bundle",
              resume_from="s3://example-bucket/half/checkpoints/step-000002")
    with pytest.raises(UsageError, match="no complete checkpoint"):
        backend.submit(plan, tmp_path / "sub")
    sm = boto3.client("sagemaker", region_name="us-east-1")
    names = [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]]
    assert backend.locations(plan)["name"] not in names               # nothing started


def test_resume_from_a_run_uri_is_the_checkpoint_prefix(tmp_path, backend):
    from launcher.jobfile import load_job
    from launcher.plan import make_plan as mk
    overrides = [s for s in MANAGED_SETTINGS + SMALL if s != "--set"] + [f"output.dir={tmp_path / 'run'}"]
    uri = "s3://example-bucket/x/jobs/prev/checkpoints"
    plan = mk(load_job(str(TEMPLATE), overrides), "sagemaker", tmp_path / "bundle", resume_from=uri)
    assert backend.request(plan)["CheckpointConfig"]["S3Uri"] == uri
