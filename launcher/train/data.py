"""Data for the training program: load, subsample, label, tokenize once, batch by length."""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from launcher.errors import DataError
from launcher.job import Job, is_local_data, split_hub_ref

_LOADERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}


def _load_one(ref: str, base: Path, default_split: str, encoding: str):
    import datasets

    if is_local_data(ref):
        path = Path(ref) if Path(ref).is_absolute() else base / ref
        if not path.is_file():
            raise DataError(f"no such data file: {path}")
        kind = _LOADERS.get(path.suffix.lower())
        if kind is None:
            raise DataError(f"{path}: unsupported data format (use {', '.join(_LOADERS)})")
        kwargs: dict[str, Any] = {}
        if kind in ("csv", "text", "json"):
            kwargs["encoding"] = encoding
        return datasets.load_dataset(kind, data_files=str(path), split="train", **kwargs)
    name, split = split_hub_ref(ref, default_split)
    return datasets.load_dataset(name, split=split)


@dataclass
class Splits:
    train: Any              # datasets.Dataset with text (+ label ids)
    validation: Any
    labels: Optional[list[str]]  # class names in id order (classification)


def _subsample(ds, n: Optional[int], seed: int):
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))


def load_splits(job: Job, base: Path) -> Splits:
    d = job.data
    train = _load_one(d.train, base, "train", d.encoding)
    if d.validation:
        val = _load_one(d.validation, base, "validation", d.encoding)
    else:
        parts = train.train_test_split(test_size=d.validation_split, seed=job.training.seed)
        train, val = parts["train"], parts["test"]
    for name, ds in (("train", train), ("validation", val)):
        if d.text_column not in ds.column_names:
            raise DataError(f"{name} data has no text column '{d.text_column}' "
                            f"(columns: {', '.join(ds.column_names)})")
        if job.task == "text-classification" and d.label_column not in ds.column_names:
            raise DataError(f"{name} data has no label column '{d.label_column}' "
                            f"(columns: {', '.join(ds.column_names)})")
    train = _subsample(train, d.max_train_samples, job.training.seed)
    val = _subsample(val, d.max_eval_samples, job.training.seed)
    labels = None
    if job.task == "text-classification":
        labels = sorted({str(x) for x in train[d.label_column]})
        if len(labels) < 2:
            raise DataError(f"training data has a single class ({labels[0] if labels else 'none'}); "
                            "classification needs at least two")
        ids = {lab: i for i, lab in enumerate(labels)}
        unknown = sorted({str(x) for x in val[d.label_column]} - set(ids))
        if unknown:
            raise DataError(f"validation labels not seen in training: {', '.join(unknown[:5])}")
        lc = d.label_column
        train = train.map(lambda b: {"labels": [ids[str(x)] for x in b[lc]]}, batched=True)
        val = val.map(lambda b: {"labels": [ids[str(x)] for x in b[lc]]}, batched=True)
    return Splits(train=train, validation=val, labels=labels)


def tokenize(ds, tokenizer, job: Job, keep_text: bool):
    """Tokenize once (batched, cached by datasets' fingerprint); adds 'length' for batching."""
    col, max_len = job.data.text_column, job.data.max_length
    causal = job.task == "causal-lm"

    def fn(batch):
        texts = [str(t) if t is not None else "" for t in batch[col]]
        enc = tokenizer(texts, truncation=True, max_length=max_len,
                        add_special_tokens=True, return_attention_mask=False)
        ids = enc["input_ids"]
        if causal and tokenizer.eos_token_id is not None:
            ids = [(x + [tokenizer.eos_token_id])[:max_len] for x in ids]
        out = {"input_ids": ids, "length": [len(x) for x in ids]}
        return out

    keep = {"labels"} | ({col} if keep_text else set())
    remove = [c for c in ds.column_names if c not in keep]
    ds = ds.map(fn, batched=True, batch_size=1000, remove_columns=remove, desc=None)
    ds = ds.filter(lambda b: [n > (1 if causal else 0) for n in b["length"]], batched=True)
    return ds


class Collator:
    """Pads a batch to its own longest example (dynamic padding) and counts real vs padded tokens."""

    def __init__(self, pad_id: int, causal: bool, multiple_of: int = 1):
        self.pad_id, self.causal, self.multiple_of = pad_id, causal, multiple_of

    def __call__(self, feats: list[dict]) -> dict[str, torch.Tensor]:
        n = max(len(f["input_ids"]) for f in feats)
        if self.multiple_of > 1:
            n = int(math.ceil(n / self.multiple_of) * self.multiple_of)
        ids = torch.full((len(feats), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(feats), n), dtype=torch.long)
        for i, f in enumerate(feats):
            x = f["input_ids"]
            ids[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
        out = {"input_ids": ids, "attention_mask": mask}
        if self.causal:
            labels = ids.clone()
            labels[mask == 0] = -100
            out["labels"] = labels
        else:
            out["labels"] = torch.as_tensor([f["labels"] for f in feats], dtype=torch.long)
        if "idx" in feats[0]:
            out["idx"] = torch.as_tensor([f["idx"] for f in feats], dtype=torch.long)
        return out


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Batches of similar length, reshuffled every epoch, reproducible from (seed, epoch).

    Indices are shuffled, cut into mega-batches of `mult` batches, each sorted by length and cut
    into batches; the batch order is then shuffled. Padding falls close to the real-token floor
    while batches stay random across the epoch. Set `.epoch` before iterating.
    mult=16 measured on the demo tweets (batch 16, max_length 64): padded/real tokens 1.054
    (mult 8: 1.106, 64: 1.013); smaller mega-batches keep more of SGD's randomness."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group: bool = True,
                 mult: int = 16, drop_last: bool = False):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.group, self.mult, self.drop_last = group, mult, drop_last
        self.epoch = 0

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        idx = list(range(len(self.lengths)))
        rng.shuffle(idx)
        if self.group:
            mega = self.batch_size * self.mult
            out_idx: list[int] = []
            for s in range(0, len(idx), mega):
                chunk = sorted(idx[s: s + mega], key=lambda i: -self.lengths[i])
                out_idx += chunk
            idx = out_idx
        batches = [idx[s: s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.group:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        n = len(self.lengths) // self.batch_size
        return n if self.drop_last or len(self.lengths) % self.batch_size == 0 else n + 1


def set_offline_when_local(job: Job, base: Path) -> None:
    """Everything local: tell the hub libraries not to try the network (air-gapped machines)."""
    refs = [job.data.train] + ([job.data.validation] if job.data.validation else [])
    model_local = (job.model.name_or_path.startswith("pkg://")
                   or (base / job.model.name_or_path).exists() or Path(job.model.name_or_path).exists())
    if model_local and all(is_local_data(r) for r in refs):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
