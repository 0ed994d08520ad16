"""sagemaker: a native SageMaker training job through boto3 (not the 1 GB SageMaker SDK).

The bundle travels as `sourcedir.tar.gz` (launcher.bundle.tar_bundle: the same bytes everywhere)
to s3://BUCKET/PREFIX/jobs/NAME/source/. The AWS Hugging Face PyTorch training image runs the
sagemaker-training toolkit, which downloads it (`sagemaker_submit_directory`), installs its
requirements.txt and runs `sagemaker_program` = launcher/train/launch.py with the remaining
hyperparameters as flags: `--output-dir /opt/ml/checkpoints`, i.e. the train command every
provider runs. The run directory *is* the checkpoint folder that CheckpointConfig syncs to S3,
so a preempted spot job restarts and resumes from its latest checkpoint, and `fetch` finds
metrics, checkpoints and the final model under the checkpoint URI.

--resume-from: a run directory URI (a previous job's CheckpointConfig S3Uri) becomes this job's
CheckpointConfig S3Uri, so the job continues that run in /opt/ml/checkpoints. A URI naming one
checkpoint (`.../checkpoints/step-N`) cannot be that prefix (the job would see the checkpoint's
files at the top of the run directory and start over): this job keeps its own checkpoint prefix
and submit first copies the checkpoint into it as `checkpoints/step-N` (S3 server-side copies,
plus the run's metrics.jsonl), so the job finds it in /opt/ml/checkpoints and resumes from it.

Secrets: CreateTrainingJob's Environment is readable by anyone who may DescribeTrainingJob, so
HF_TOKEN / WANDB_API_KEY are never put there (nor into the rendered JSON): keep them in AWS
Secrets Manager and read them from the job role, or use a public model.

Endpoint: boto3's own AWS_ENDPOINT_URL (tests point it at moto on 127.0.0.1).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Iterator

from launcher.backends import managed
from launcher.backends.base import Backend, CredentialCheck, Handle, JobStatus
from launcher.backends.retry import with_retries
from launcher.bundle import tar_bundle
from launcher.errors import CredentialsError, ProviderError, UsageError

PROVIDER = "sagemaker"
REQUEST_FILE = "create_training_job.json"
SOURCEDIR = "sourcedir.tar.gz"
PROGRAM = "launcher/train/launch.py"       # in the bundle; equals `python -m launcher.train.launch`
CKPT_LOCAL = "/opt/ml/checkpoints"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
MAX_RUNTIME_S = 28 * 24 * 3600             # SageMaker's limit for MaxRuntimeInSeconds
# AWS Hugging Face PyTorch training image (backend-sdks.md, 2026-04 release); region-specific
# registries for the few regions that AWS serves from their own account.
IMAGE_TAG = "huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04"
IMAGE_ACCOUNT = "763104351884"
REGION_ACCOUNTS = {"af-south-1": "626614931356", "ap-east-1": "871362719292", "eu-south-1": "692866216735",
                   "me-south-1": "217643126080", "cn-north-1": "727897471807", "cn-northwest-1": "727897471807"}
CRED_HINT = ("set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure`")
REFUSED_CODES = {"UnrecognizedClientException", "InvalidClientTokenId", "AccessDenied", "AccessDeniedException",
                 "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch", "InvalidAccessKeyId"}
TRANSIENT_CODES = {"Throttling", "ThrottlingException", "ServiceUnavailable", "InternalFailure",
                   "InternalServerError", "RequestTimeout", "SlowDown"}
# s3://bucket/[run/checkpoints/]step-N: one checkpoint, not a run directory.
STEP_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>(?:(?P<run>.*?)/?(?:checkpoints/)?)?(?P<step>step-\d+))/?$")
STATES = {"InProgress": "running", "Completed": "succeeded", "Failed": "failed",
          "Stopping": "running", "Stopped": "cancelled"}


def image_uri(region: str) -> str:
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{REGION_ACCOUNTS.get(region, IMAGE_ACCOUNT)}.dkr.ecr.{region}.{domain}/{IMAGE_TAG}"


# CreateTrainingJob's ResourceConfig.InstanceType enum, as botocore 1.44.8's service model lists it
# (snapshot 2026-11-29; family:sizes). Kept here so a dry run needs no botocore; the tests compare it
# with the installed botocore's enum and fail when AWS's list changes.
INSTANCE_TYPES_PACKED = """
m4:xlarge,2xlarge,4xlarge,10xlarge,16xlarge g4dn:xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge
m5:large,xlarge,2xlarge,4xlarge,12xlarge,24xlarge c4:xlarge,2xlarge,4xlarge,8xlarge
p2:xlarge,8xlarge,16xlarge p3:2xlarge,8xlarge,16xlarge p3dn:24xlarge p4d:24xlarge p4de:24xlarge
p5:48xlarge,4xlarge p5e:48xlarge p5en:48xlarge c5:xlarge,2xlarge,4xlarge,9xlarge,18xlarge
c5n:xlarge,2xlarge,4xlarge,9xlarge,18xlarge
g5:xlarge,2xlarge,4xlarge,8xlarge,16xlarge,12xlarge,24xlarge,48xlarge
g6:xlarge,2xlarge,4xlarge,8xlarge,16xlarge,12xlarge,24xlarge,48xlarge
g6e:xlarge,2xlarge,4xlarge,8xlarge,16xlarge,12xlarge,24xlarge,48xlarge trn1:2xlarge,32xlarge
trn1n:32xlarge trn2:48xlarge
m6i:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge,24xlarge,32xlarge
c6i:xlarge,2xlarge,8xlarge,4xlarge,12xlarge,16xlarge,24xlarge,32xlarge
r5d:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge,24xlarge t3:medium,large,xlarge,2xlarge
r5:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge,24xlarge p6-b200:48xlarge
m7i:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge,24xlarge,48xlarge
c7i:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge,24xlarge,48xlarge
r7i:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge,24xlarge,48xlarge p6e-gb200:36xlarge
p6-b300:48xlarge g7e:2xlarge,4xlarge,8xlarge,12xlarge,24xlarge,48xlarge
g7:2xlarge,4xlarge,8xlarge,12xlarge,24xlarge,48xlarge
r6i:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge,24xlarge,32xlarge
m8i:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge,24xlarge,32xlarge,48xlarge,96xlarge
c8i:xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge,24xlarge,32xlarge,48xlarge,96xlarge
r8i:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge,24xlarge,32xlarge,48xlarge,96xlarge
m7i-flex:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge
c7i-flex:xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge
m8i-flex:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge
c8i-flex:xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge
r8i-flex:large,xlarge,2xlarge,4xlarge,8xlarge,12xlarge,16xlarge
"""


def instance_types() -> list[str]:
    """The InstanceType enum of CreateTrainingJob (the snapshot above), grouped by family."""
    return [f"ml.{fam}.{size}" for tok in INSTANCE_TYPES_PACKED.split()
            for fam, _, sizes in [tok.partition(":")] for size in sizes.split(",")]


def _transient(exc: BaseException) -> bool:
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return resp.get("Error", {}).get("Code") in TRANSIENT_CODES or status in (429, 500, 502, 503, 504)
    name = type(exc).__name__
    return name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError")


def _error_code(exc: BaseException) -> str:
    resp = getattr(exc, "response", None)
    return resp.get("Error", {}).get("Code", "") if isinstance(resp, dict) else ""


def call(fn, what: str):
    """One AWS call: retried when transient, refused credentials and API errors made readable."""
    from botocore.exceptions import ClientError, NoCredentialsError, ParamValidationError
    try:
        return with_retries(PROVIDER, fn, retry_on=_transient, what=what)
    except ParamValidationError as e:  # botocore's own check of the request, before it is sent
        raise UsageError(f"sagemaker: the {what} request is invalid: "
                         + " ".join(str(e).split())[:300]) from None
    except NoCredentialsError:
        raise CredentialsError(PROVIDER, "no AWS credentials found", hint=CRED_HINT) from None
    except ClientError as e:
        raise_aws(e, what)


def check_request(sm, req: dict) -> None:
    """botocore's own validator on the request, before anything is uploaded or created."""
    from botocore.validate import ParamValidator
    shape = sm.meta.service_model.operation_model("CreateTrainingJob").input_shape
    report = ParamValidator().validate(req, shape)
    if report.has_errors():
        raise UsageError("sagemaker: the CreateTrainingJob request is invalid: "
                         + report.generate_report().splitlines()[-1].strip())


def raise_aws(e, what: str):
    err = e.response.get("Error", {})
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    msg = " ".join(str(err.get("Message", e)).split())[:300]
    if status in (401, 403) or err.get("Code") in REFUSED_CODES:
        raise CredentialsError(PROVIDER, f"the credentials for sagemaker were refused: {msg}",
                               hint=CRED_HINT) from None
    raise ProviderError(PROVIDER, f"{what} failed: {err.get('Code', 'error')}: {msg}",
                        hint="check the role, bucket and region in providers.sagemaker") from None


class SageMakerBackend(Backend):
    name = PROVIDER
    extra = "sagemaker"
    cannot: dict[str, str] = {}

    # -- credentials and clients -------------------------------------------------------------
    def check_credentials(self) -> CredentialCheck:
        try:
            import boto3
        except ImportError:
            return CredentialCheck(False, "boto3 is not installed", "pip install 'launcher[sagemaker]'")
        creds = boto3.session.Session().get_credentials()
        if creds is None:
            return CredentialCheck(False, "no AWS credentials found", CRED_HINT)
        return CredentialCheck(True, f"AWS credentials from {getattr(creds, 'method', 'the environment')}")

    def client(self, service: str, region: str):
        import boto3
        from botocore.config import Config
        return boto3.session.Session(region_name=region).client(
            service, config=Config(retries={"mode": "standard", "max_attempts": 3}))

    # -- plan ---------------------------------------------------------------------------------
    def validate(self, plan) -> None:
        super().validate(plan)
        s = plan.job.providers.sagemaker
        managed.need(plan, PROVIDER, {"role_arn": "arn:aws:iam::ACCOUNT:role/SageMakerRole",
                                      "bucket": "s3://my-bucket/launcher"})
        managed.check_uri(plan, PROVIDER, "bucket", "s3://")
        if plan.resume_from and not plan.resume_from.startswith("s3://"):
            raise UsageError(f"sagemaker resumes from an s3:// checkpoint URI, not {plan.resume_from}",
                             hint="pass --resume-from with a previous job's CheckpointConfig S3Uri")
        m = STEP_URI.match(plan.resume_from or "")
        if m:
            plan.settings["sagemaker_resume_checkpoint"] = plan.resume_from
            plan.notes.append(f"sagemaker: {plan.resume_from} is one checkpoint: submit copies it into this "
                              f"job's checkpoint prefix as checkpoints/{m['step']} (and the run's "
                              "metrics.jsonl), so the job resumes from it in /opt/ml/checkpoints")
        runtime = int(plan.job.compute.max_hours * 3600)
        if runtime > MAX_RUNTIME_S:
            raise plan.loaded.error("compute.max_hours", "SageMaker jobs run at most 672 hours (28 days)")
        choice = managed.choose(plan, PROVIDER, s.instance_type)
        types = instance_types()
        if choice.instance_type not in types:
            gpuish = [t for t in types if t.startswith(("ml.g", "ml.p"))]
            raise UsageError(f"sagemaker has no training instance type {choice.instance_type}",
                             hint=f"GPU types: {', '.join(gpuish[:40])}")
        region = managed.region(plan, PROVIDER, s.region, choice.region, "us-east-1")
        managed.record(plan, PROVIDER, choice, region)
        plan.settings.update(sagemaker_region=region, sagemaker_instance_type=choice.instance_type)
        if plan.job.output.push_to_hub:
            plan.notes.append("sagemaker: HF_TOKEN is not sent with the job (its Environment is readable "
                              "via DescribeTrainingJob); keep it in AWS Secrets Manager for the job role")

    def locations(self, plan) -> dict:
        bucket, prefix = managed.check_uri(plan, PROVIDER, "bucket", "s3://")
        name = managed.job_name(plan, PROVIDER)
        base = "/".join(p for p in (prefix, "jobs", name) if p)
        return {"name": name, "bucket": bucket, "base": base,
                "source": f"s3://{bucket}/{base}/source/{SOURCEDIR}",
                "checkpoints": (f"s3://{bucket}/{base}/checkpoints" if STEP_URI.match(plan.resume_from or "")
                                else plan.resume_from or f"s3://{bucket}/{base}/checkpoints"),
                "output": f"s3://{bucket}/{base}/output"}

    def request(self, plan) -> dict:
        """The exact CreateTrainingJob parameters."""
        s, c = plan.job.providers.sagemaker, plan.job.compute
        loc = self.locations(plan)
        region = plan.settings["sagemaker_region"]
        runtime = int(c.max_hours * 3600)
        stopping = {"MaxRuntimeInSeconds": runtime}
        if c.spot:  # wait for capacity up to half the runtime again (at least an hour)
            stopping["MaxWaitTimeInSeconds"] = min(MAX_RUNTIME_S, runtime + max(3600, runtime // 2))
        hp = {"sagemaker_program": PROGRAM, "sagemaker_submit_directory": loc["source"],
              "sagemaker_region": region, "sagemaker_container_log_level": 20, "output-dir": CKPT_LOCAL}
        req = {
            "TrainingJobName": loc["name"],
            "RoleArn": s.role_arn,
            "AlgorithmSpecification": {"TrainingImage": s.image_uri or image_uri(region),
                                       "TrainingInputMode": "File"},
            # The toolkit json-decodes each value, as the SageMaker SDK encodes them.
            "HyperParameters": {k: json.dumps(v) for k, v in hp.items()},
            "ResourceConfig": {"InstanceType": plan.settings["sagemaker_instance_type"],
                               "InstanceCount": c.nodes, "VolumeSizeInGB": s.volume_size_gb or c.disk_gb},
            "OutputDataConfig": {"S3OutputPath": loc["output"]},
            "CheckpointConfig": {"S3Uri": loc["checkpoints"], "LocalPath": CKPT_LOCAL},
            "StoppingCondition": stopping,
            "Environment": {**managed.TRAIN_ENV, "LAUNCHER_BUNDLE_SHA256": plan.bundle.sha256},
            "EnableManagedSpotTraining": bool(c.spot),
            "Tags": [{"Key": "launcher:job", "Value": plan.job.name},
                     {"Key": "launcher:bundle-sha256", "Value": plan.bundle.sha256[:32]}],
        }
        return req

    def render(self, plan, out: Path) -> list[Path]:
        """The request as JSON (exactly what submit sends) and the bundle tarball; no AWS SDK here."""
        out.mkdir(parents=True, exist_ok=True)
        req = self.request(plan)
        tarball = tar_bundle(plan.bundle, out / SOURCEDIR)
        path = out / REQUEST_FILE
        path.write_text(json.dumps(req, indent=2) + "\n")
        return [path, tarball]

    # -- submit and follow ----------------------------------------------------------------------
    def submit(self, plan, out: Path) -> Handle:
        written = self.render(plan, out)
        req = json.loads(written[0].read_text())
        region = plan.settings["sagemaker_region"]
        loc = self.locations(plan)
        sm, s3 = self.client("sagemaker", region), self.client("s3", region)
        check_request(sm, req)
        handle = Handle(PROVIDER, loc["name"], plan.job.name, str(plan.run_dir),
                        extra={"region": region, "checkpoints": loc["checkpoints"], "output": loc["output"]})
        existing = self._describe(sm, loc["name"], missing_ok=True)
        if existing is not None:  # the same plan was submitted before: that job is the answer
            handle.extra.update(arn=existing.get("TrainingJobArn"), reused=True)
            return handle
        if STEP_URI.match(plan.resume_from or ""):
            self.seed_checkpoint(s3, plan.resume_from, loc["checkpoints"])
        key = loc["source"][len(f"s3://{loc['bucket']}/"):]
        body = written[1].read_bytes()
        call(lambda: s3.put_object(Bucket=loc["bucket"], Key=key, Body=body), "uploading the bundle")
        resp = call(lambda: sm.create_training_job(**req), "CreateTrainingJob")
        handle.extra["arn"] = resp.get("TrainingJobArn")
        return handle

    def seed_checkpoint(self, s3, uri: str, ckpt_uri: str) -> None:
        """Copy one checkpoint (s3://.../step-N) into ckpt_uri/checkpoints/step-N, with the run's
        metrics.jsonl; refuse when it is not a complete checkpoint (COMPLETE and trainer_state)."""
        from launcher.train import state as st
        m = STEP_URI.match(uri)
        src_bucket, src_key = m["bucket"], m["key"]
        dst_bucket, _, dst_base = ckpt_uri[len("s3://"):].partition("/")
        pages = call(lambda: list(s3.get_paginator("list_objects_v2").paginate(
            Bucket=src_bucket, Prefix=src_key + "/")), "listing the checkpoint")
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        names = {k[len(src_key) + 1:] for k in keys}
        if not {st.COMPLETE, st.STATE_FILE} <= names:
            raise UsageError(f"--resume-from {uri}: no complete checkpoint there "
                             f"({len(keys)} objects, no {st.COMPLETE} marker or {st.STATE_FILE})",
                             hint="pass a checkpoints/step-N folder that has a COMPLETE file, or the run's URI")
        dst = "/".join(p for p in (dst_base, st.CKPT_DIR, m["step"]) if p)
        for k in keys:
            call(lambda: s3.copy({"Bucket": src_bucket, "Key": k}, dst_bucket, f"{dst}/{k[len(src_key) + 1:]}"),
                 "copying the checkpoint")
        if m["run"] is not None and "/checkpoints/" in f"/{src_key}":
            metrics = f"{m['run']}/metrics.jsonl" if m["run"] else "metrics.jsonl"
            try:
                s3.head_object(Bucket=src_bucket, Key=metrics)
            except Exception:  # noqa: BLE001 - no metrics there: the curves start at the checkpoint
                return
            call(lambda: s3.copy({"Bucket": src_bucket, "Key": metrics}, dst_bucket,
                                 "/".join(p for p in (dst_base, "metrics.jsonl") if p)), "copying metrics.jsonl")

    def _describe(self, sm, name: str, missing_ok: bool = False):
        from botocore.exceptions import ClientError
        try:
            return with_retries(PROVIDER, lambda: sm.describe_training_job(TrainingJobName=name),
                                retry_on=_transient, what="DescribeTrainingJob")
        except ClientError as e:
            if missing_ok and _error_code(e) in ("ValidationException", "ResourceNotFound"):
                return None
            raise_aws(e, "DescribeTrainingJob")

    def status(self, handle: Handle) -> JobStatus:
        d = self._describe(self.client("sagemaker", handle.extra.get("region", "us-east-1")), handle.job_id)
        state = STATES.get(d["TrainingJobStatus"], "unknown")
        detail = f"{d['TrainingJobStatus']} ({d.get('SecondaryStatus', '')})"
        if d.get("FailureReason"):
            detail += f": {d['FailureReason']}"
        if state == "running" and d.get("SecondaryStatus") in ("Starting", "Pending", "Downloading"):
            state = "pending"
        return JobStatus(state, detail, d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"))

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        """CloudWatch: /aws/sagemaker/TrainingJobs, one stream per instance (NAME/algo-N-...)."""
        from botocore.exceptions import ClientError
        logs = self.client("logs", handle.extra.get("region", "us-east-1"))
        tokens: dict[str, str] = {}
        while True:
            try:
                streams = call(lambda: logs.describe_log_streams(
                    logGroupName=LOG_GROUP, logStreamNamePrefix=f"{handle.job_id}/"), "reading logs")["logStreams"]
            except ProviderError as e:
                if "ResourceNotFound" not in str(e):
                    raise
                streams = []
            for st in sorted(streams, key=lambda x: x["logStreamName"]):
                name = st["logStreamName"]
                host = "-".join(name.split("/", 1)[-1].split("-")[:2])  # algo-1
                prefix = f"[{host}] " if len(streams) > 1 else ""
                while True:
                    kw = {"nextToken": tokens[name]} if name in tokens else {"startFromHead": True}
                    try:
                        r = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=name, **kw)
                    except ClientError as e:
                        raise_aws(e, "reading logs")
                    for ev in r.get("events", []):
                        yield prefix + ev["message"].rstrip("\n")
                    done = r.get("nextForwardToken") == tokens.get(name) or not r.get("events")
                    tokens[name] = r.get("nextForwardToken", tokens.get(name))
                    if done:
                        break
            if not follow or self.status(handle).finished:
                return
            time.sleep(5)

    def cancel(self, handle: Handle) -> None:
        """StopTrainingJob while it runs; a no-op on a stopping or finished job (safe twice)."""
        from botocore.exceptions import ClientError
        sm = self.client("sagemaker", handle.extra.get("region", "us-east-1"))
        d = self._describe(sm, handle.job_id)
        if d["TrainingJobStatus"] != "InProgress":
            return
        try:
            with_retries(PROVIDER, lambda: sm.stop_training_job(TrainingJobName=handle.job_id),
                         retry_on=_transient, what="StopTrainingJob")
        except ClientError as e:
            if _error_code(e) == "ValidationException":  # it stopped or finished meanwhile
                return
            raise_aws(e, "StopTrainingJob")

    def fetch(self, handle: Handle, dest: Path) -> Path:
        """The run directory (checkpoint URI) into dest; SageMaker's output/ into dest/sagemaker-output."""
        s3 = self.client("s3", handle.extra.get("region", "us-east-1"))
        for uri, sub in ((handle.extra["checkpoints"], ""), (handle.extra["output"], "sagemaker-output")):
            bucket, _, prefix = uri[len("s3://"):].partition("/")
            prefix = prefix.rstrip("/") + "/"
            pages = call(lambda: list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)),
                         "listing outputs")
            for page in pages:
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(prefix):]
                    if not rel or rel.endswith("/") or ".." in rel.split("/"):
                        continue
                    target = dest / sub / rel if sub else dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    call(lambda: s3.download_file(bucket, obj["Key"], str(target)), "downloading outputs")
        return dest
