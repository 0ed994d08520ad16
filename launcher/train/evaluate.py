"""Evaluation with gather_for_metrics, and the artifacts written at the end of a run."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from launcher.train import metrics as mt
from launcher.train import state as st


@dataclass
class EvalResult:
    metrics: dict
    idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    preds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    probs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    step: int = -1


def eval_loader(val_ds, batch_size: int, collate):
    """Longest first (little padding), fixed batch size so that accelerate shards evenly and
    gather_for_metrics drops the duplicates it adds to the last batch."""
    cols = [c for c in val_ds.column_names if c in ("input_ids", "labels", "idx")]
    feats = val_ds.select_columns(cols).sort("length", reverse=True) if "length" in cols else \
        val_ds.sort("length", reverse=True).select_columns(cols)
    return torch.utils.data.DataLoader(feats, batch_size=batch_size, shuffle=False, collate_fn=collate)


def improves(metric: str, new: float, best) -> bool:
    return mt.is_better(metric, new, best)


@torch.no_grad()
def evaluate(accelerator, model, val_dl, causal: bool, num_labels: int) -> EvalResult:
    model.eval()
    idx, preds, probs, labels, losses, tok_counts, correct_toks = [], [], [], [], [], [], []
    for batch in val_dl:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = out.logits.float()
        if causal:
            shift_logits = logits[:, :-1]
            shift_labels = batch["labels"][:, 1:]
            valid = shift_labels != -100
            tok_loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1).clamp(min=0),
                reduction="none").view(shift_labels.shape)
            ex_loss_sum = (tok_loss * valid).sum(-1)
            ex_tokens = valid.sum(-1)
            ex_correct = ((shift_logits.argmax(-1) == shift_labels) & valid).sum(-1)
            g = accelerator.gather_for_metrics((batch["idx"], ex_loss_sum, ex_tokens, ex_correct))
            for lst, x in zip((idx, losses, tok_counts, correct_toks), g):
                lst.append(x)
        else:
            loss = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
            p = torch.softmax(logits, -1)
            conf, pred = p.max(-1)
            g = accelerator.gather_for_metrics((batch["idx"], pred, conf, batch["labels"], loss))
            for lst, x in zip((idx, preds, probs, labels, losses), g):
                lst.append(x)
    model.train()
    # Per-example figures stay on the device until here: one copy back at the end instead of a
    # host wait on every batch.
    cat = (lambda xs: torch.cat(xs).cpu().numpy() if xs else np.zeros(0))
    res = EvalResult(metrics={}, idx=cat(idx), losses=cat(losses))
    if causal:
        toks = cat(tok_counts)
        total = max(float(toks.sum()), 1.0)
        mean_loss = float(res.losses.sum() / total)
        res.metrics = {"eval_loss": mean_loss, "eval_perplexity": mt.perplexity(mean_loss),
                       "eval_token_accuracy": float(cat(correct_toks).sum() / total),
                       "eval_tokens": int(total)}
        res.losses = res.losses / np.maximum(toks, 1)
    else:
        res.preds, res.probs, res.labels = cat(preds), cat(probs), cat(labels)
        cm = mt.classification_metrics(res.labels, res.preds, num_labels)
        res.metrics = {"eval_loss": float(res.losses.mean()) if len(res.losses) else float("nan"),
                       **{f"eval_{k}": v for k, v in cm.items()}}
    res.metrics["eval_examples"] = int(len(res.idx))
    return res


def _write_predictions(path: Path, res: EvalResult, val_ds, job, labels) -> None:
    texts = val_ds[job.data.text_column]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if job.task == "causal-lm":
            w.writerow(["text", "loss", "perplexity"])
            for i, loss in sorted(zip(res.idx.tolist(), res.losses.tolist())):
                w.writerow([texts[i], f"{loss:.5f}", f"{mt.perplexity(loss):.4f}"])
        else:
            w.writerow(["text", "label", "prediction", "probability"])
            rows = sorted(zip(res.idx.tolist(), res.labels.tolist(), res.preds.tolist(), res.probs.tolist()))
            for i, y, p, pr in rows:
                w.writerow([texts[i], labels[y], labels[p], f"{pr:.5f}"])
    tmp.replace(path)


def _model_card(job, res: EvalResult, rs: dict, model_step: int, n_params: int, labels) -> str:
    t = job.training
    lines = [
        "---", f"base_model: {job.model.name_or_path}", "library_name: transformers",
        f"pipeline_tag: {'text-classification' if job.task == 'text-classification' else 'text-generation'}",
        "tags: [launcher]", "---", "",
        f"# {job.name}", "",
        f"{'Fine-tuned' if job.model.init == 'pretrained' else 'Pretrained from scratch'} with launcher "
        f"for **{job.task}**.", "",
        "## Base model", f"- `{job.model.name_or_path}` ({job.model.init}), {n_params:,} parameters", "",
        "## Data",
        f"- train: `{job.data.train}`; validation: `{job.data.validation or f'{job.data.validation_split:.0%} of train'}`",
        f"- text column `{job.data.text_column}`" + (f", label column `{job.data.label_column}`" if labels else ""),
        f"- max_length {job.data.max_length} tokens; sensitivity {job.data.sensitivity}",
    ]
    if labels:
        lines.append(f"- classes: {', '.join(labels)}")
    lines += ["", "## Hyperparameters",
              f"- epochs {t.epochs}, batch size {t.batch_size} per device, learning rate {t.learning_rate}, "
              f"weight decay {t.weight_decay}, warmup ratio {t.warmup_ratio}, gradient accumulation "
              f"{t.gradient_accumulation_steps}, seed {t.seed}",
              "", "## Results (validation)", f"Model from step {model_step} of {rs['global_step']}.", "",
              "| metric | value |", "| --- | --- |"]
    for k, v in res.metrics.items():
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    return "\n".join(lines) + "\n"


def finish(accelerator, model, tokenizer, val_dl, val_ds, splits, job, run_dir: Path, rs: dict, *,
           status: str, model_step: int, n_params: int, metrics, steps_per_epoch: int,
           last: EvalResult | None) -> None:
    causal = job.task == "causal-lm"
    labels = splits.labels
    res = last if last is not None and last.step == model_step else \
        evaluate(accelerator, model, val_dl, causal, len(labels or []))
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    model_dir = run_dir / "model"
    tmp = run_dir / ".model.tmp"
    import shutil
    if tmp.exists():
        shutil.rmtree(tmp)
    unwrapped.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "README.md").write_text(_model_card(job, res, rs, model_step, n_params, labels))
    if model_dir.exists():
        shutil.rmtree(model_dir)
    tmp.rename(model_dir)
    _write_predictions(run_dir / "predictions.csv", res, val_ds, job, labels)
    final = {**res.metrics, "step": model_step}
    if labels:
        final["labels"] = labels
        final["confusion_matrix"] = mt.confusion_matrix(res.labels, res.preds, len(labels))
    st.write_json_atomic(run_dir / "eval_metrics.json", final)
    train_s = rs["train_time_s"]
    summary = {
        "status": status, "task": job.task, "model": job.model.name_or_path, "init": job.model.init,
        "parameters": n_params, "global_step": rs["global_step"], "epochs_completed": rs["epoch"],
        "steps_per_epoch": steps_per_epoch, "model_step": model_step, "best_step": rs["best_step"],
        "best_metric": rs["best_metric"], "monitor": job.training.monitor,
        "train_runtime_s": round(train_s, 3),
        "train_examples_per_s": rs["examples_seen"] / train_s if train_s > 0 else None,
        "examples_seen": rs["examples_seen"], "real_tokens": rs["real_tokens"],
        "padded_tokens": rs["padded_tokens"],
        "padded_over_real": rs["padded_tokens"] / rs["real_tokens"] if rs["real_tokens"] else None,
        "processes": accelerator.num_processes, "device": str(accelerator.device),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "final_metrics": res.metrics,
    }
    try:  # the diagnosis reads metrics.jsonl; shipped in the bundle with the training program
        from launcher.report.diagnosis import diagnose_run
        summary["diagnosis"] = diagnose_run(run_dir, summary)
    except ImportError:
        pass
    st.write_json_atomic(run_dir / "summary.json", summary)
    metrics.write({"type": "end", "step": rs["global_step"], "status": status, "model_step": model_step})
    shown = {k: round(v, 4) for k, v in res.metrics.items() if isinstance(v, float)}
    print("final: " + json.dumps(shown), flush=True)
    if job.output.push_to_hub:
        import os
        if not os.environ.get("HF_TOKEN"):
            print("warning: output.push_to_hub is set but HF_TOKEN is not; not pushing", flush=True)
        else:
            unwrapped.push_to_hub(job.output.push_to_hub, token=os.environ["HF_TOKEN"])
            tokenizer.push_to_hub(job.output.push_to_hub, token=os.environ["HF_TOKEN"])
