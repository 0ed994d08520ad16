"""The peer for bench/train_throughput.py: the transformers Trainer on the same job.

    python bench/trainer_peer.py --bundle DIR --out DIR [--group-by-length]

Reads the bundle's job.yaml and fine-tunes the same model on the same examples (the launcher's
own data selection, so both sides see identical rows) with the standard Trainer recipe: tokenize
with `datasets.map`, pad each batch with DataCollatorWithPadding, AdamW, linear schedule with the
same warmup, grad-norm clipping 1.0, same batch size, learning rate, weight decay and seed.
Prints one JSON line: examples/s over the training loop (on_train_begin .. on_train_end, data
loading included), real and padded tokens, eval accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--group-by-length", action="store_true")
    a = ap.parse_args()
    bundle = Path(a.bundle).resolve()
    sys.path.insert(0, str(bundle))  # the bundle's own launcher package, like the real run

    import numpy as np
    import torch
    import yaml
    from transformers import (DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments,
                              set_seed)

    from launcher.job import Job
    from launcher.train.data import load_splits, set_offline_when_local
    from launcher.train.model import build_model, load_tokenizer

    job = Job.model_validate(yaml.safe_load((bundle / "job.yaml").read_text()))
    set_offline_when_local(job, bundle)
    t = job.training
    set_seed(t.seed)
    tok = load_tokenizer(job, bundle)
    splits = load_splits(job, bundle)
    col = job.data.text_column

    def enc(batch):
        return tok([str(x) for x in batch[col]], truncation=True, max_length=job.data.max_length)

    keep = {"labels"}
    train = splits.train.map(enc, batched=True,
                             remove_columns=[c for c in splits.train.column_names if c not in keep])
    val = splits.validation.map(enc, batched=True,
                                remove_columns=[c for c in splits.validation.column_names if c not in keep])
    if a.group_by_length:
        train = train.add_column("length", [len(x) for x in train["input_ids"]])
    model = build_model(job, bundle, tok, splits.labels)

    base = DataCollatorWithPadding(tok)
    counts = {"real": 0, "padded": 0, "count": True}

    def collate(feats):
        b = base(feats)
        if counts["count"]:
            m = b["attention_mask"]
            counts["real"] += int(m.sum())
            counts["padded"] += int(m.numel())
        return b

    steps = math.ceil(len(train) / t.batch_size) * t.epochs
    args = TrainingArguments(
        output_dir=a.out, use_cpu=not torch.cuda.is_available(), per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size * 2, learning_rate=t.learning_rate,
        weight_decay=t.weight_decay, warmup_steps=int(t.warmup_ratio * steps), num_train_epochs=t.epochs,
        max_grad_norm=1.0, seed=t.seed, eval_strategy="no", save_strategy="no", logging_steps=t.logging_every,
        report_to=[], disable_tqdm=True,
        train_sampling_strategy="group_by_length" if a.group_by_length else "random",
        **({"length_column_name": "length"} if a.group_by_length else {}))

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *_a, **_k):
            clock["t0"] = time.perf_counter()

        def on_train_end(self, *_a, **_k):
            clock["t1"] = time.perf_counter()

    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collate,
                      processing_class=tok, callbacks=[Clock()])
    out = trainer.train()
    counts["count"] = False
    loop_s = clock["t1"] - clock["t0"]
    t_eval = time.perf_counter()
    pred = trainer.predict(val)
    eval_s = time.perf_counter() - t_eval
    acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    n = len(train) * t.epochs
    print(json.dumps({
        "examples_per_s": n / loop_s, "loop_s": loop_s, "trainer_runtime_s": out.metrics["train_runtime"],
        "eval_s": eval_s, "eval_accuracy": acc, "steps": out.global_step, "train_examples": n,
        "real_tokens": counts["real"], "padded_tokens": counts["padded"], "threads": torch.get_num_threads(),
        "optim": str(args.optim), "final_loss": out.training_loss,
    }), flush=True)


if __name__ == "__main__":
    main()
