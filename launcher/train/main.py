"""The training program every provider runs:  accelerate launch train.py --job job.yaml --output-dir DIR

Reads top to bottom: data, model, one `prepare`, the loop, evaluation with gather_for_metrics,
atomic `save_state` checkpoints, resume from the latest, final artifacts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import yaml

from launcher.errors import LauncherError, UsageError
from launcher.job import Job
from launcher.train import state as st


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="train.py", description="launcher training program")
    ap.add_argument("--job", default="job.yaml", help="the portable job file (in the bundle)")
    ap.add_argument("--output-dir", required=True, help="the run directory")
    ap.add_argument("--resume-from", default=None,
                    help="a run directory (or checkpoint folder) to continue from; default: output-dir")
    ap.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        code = run(args)
    except LauncherError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        code = e.exit_code
    sys.exit(code)


class _Stop:
    """SIGTERM (preemption) or SIGINT (Ctrl-C): finish the step, checkpoint, exit."""

    def __init__(self):
        self.requested = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: give up at once
        self.requested = signal.Signals(signum).name


def _mixed_precision(job: Job) -> str:
    import torch

    mp = job.training.mixed_precision
    if not torch.cuda.is_available():
        return "no"
    if mp == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return mp


def run(args) -> int:
    job_path = Path(args.job).resolve()
    base = job_path.parent
    job = Job.model_validate(yaml.safe_load(job_path.read_text()))
    job_sha = hashlib.sha256(job_path.read_bytes()).hexdigest()
    run_dir = Path(args.output_dir).resolve()
    stop = _Stop()

    from launcher.train.data import set_offline_when_local
    set_offline_when_local(job, base)
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    from launcher.train import evaluate as ev
    from launcher.train.data import (Collator, LengthGroupedBatches, load_splits, padding_stats,
                                     tokenize)
    from launcher.train.model import build_model, count_parameters, load_tokenizer, param_groups

    t = job.training
    # cpu=True with no GPU: several CPU processes then join with gloo (MULTI_CPU).
    accelerator = Accelerator(gradient_accumulation_steps=t.gradient_accumulation_steps,
                              mixed_precision=_mixed_precision(job), cpu=not torch.cuda.is_available())
    main_proc = accelerator.is_main_process
    if main_proc:
        run_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    set_seed(t.seed)
    log = (lambda m: print(m, flush=True)) if main_proc else (lambda m: None)
    log(f"launcher: {accelerator.num_processes} process(es) on {accelerator.device}, "
        f"mixed precision {accelerator.mixed_precision}")

    # ---- data ----
    tokenizer = load_tokenizer(job, base)
    with accelerator.main_process_first():
        splits = load_splits(job, base)
        train_ds = tokenize(splits.train, tokenizer, job, keep_text=False)
        val_ds = tokenize(splits.validation, tokenizer, job, keep_text=True)
    val_ds = val_ds.add_column("idx", list(range(len(val_ds))))
    causal = job.task == "causal-lm"
    collate = Collator(tokenizer.pad_token_id, causal)
    train_cols = [c for c in train_ds.column_names if c in ("input_ids", "labels")]
    train_feats = train_ds.select_columns(train_cols)
    sampler = LengthGroupedBatches(train_ds["length"], t.batch_size, t.seed, group=t.group_by_length)
    train_dl = torch.utils.data.DataLoader(train_feats, batch_sampler=sampler, collate_fn=collate)
    val_dl = ev.eval_loader(val_ds, t.batch_size * 2, collate)

    # ---- model, optimizer, schedule ----
    model = build_model(job, base, tokenizer, splits.labels)
    n_params = count_parameters(model)
    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.learning_rate)
    micro_per_epoch = len(sampler)
    per_proc_micro = math.ceil(micro_per_epoch / accelerator.num_processes)
    steps_per_epoch = max(1, math.ceil(per_proc_micro / t.gradient_accumulation_steps))
    total_steps = steps_per_epoch * t.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_steps), total_steps)
    model, optimizer, train_dl, val_dl, scheduler = accelerator.prepare(
        model, optimizer, train_dl, val_dl, scheduler)

    # ---- resume ----
    metrics = st.MetricsWriter(run_dir, main_proc)
    rs = {"global_step": 0, "epoch": 0, "micro_in_epoch": 0, "best_metric": None, "best_step": None,
          "evals_without_improvement": 0, "train_time_s": 0.0, "examples_seen": 0,
          "real_tokens": 0, "padded_tokens": 0, "job_sha256": job_sha}
    resumed_from = None
    if not args.fresh:
        src = Path(args.resume_from).resolve() if args.resume_from else run_dir
        ckpt = src if (src / st.STATE_FILE).exists() else st.latest_checkpoint(src)
        if ckpt is not None:
            saved = st.read_state(ckpt)
            if saved.get("job_sha256") not in (None, job_sha) and not args.resume_from:
                raise UsageError(
                    f"{run_dir} holds checkpoints of a different job",
                    hint="use another output.dir, or --fresh to start over (the old run is kept aside)")
            accelerator.load_state(str(ckpt))
            rs.update({k: v for k, v in saved.items() if k in rs})
            rs["job_sha256"] = job_sha
            resumed_from = ckpt
            log(f"Resuming from {ckpt} (step {rs['global_step']}, epoch {rs['epoch']})")
    if resumed_from is not None and resumed_from.parent.parent == run_dir:
        metrics.truncate_after(rs["global_step"])
    elif main_proc and metrics.path.exists() and resumed_from is None:
        metrics.path.unlink()
    metrics.write({"type": "start", "step": rs["global_step"], "task": job.task, "epochs": t.epochs,
                   "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
                   "train_examples": len(train_ds), "eval_examples": len(val_ds),
                   "processes": accelerator.num_processes, "device": str(accelerator.device),
                   "parameters": n_params, "monitor": t.monitor,
                   "resumed_from_step": rs["global_step"] if resumed_from else None})

    eval_steps = steps_per_epoch if t.eval_every == "epoch" else t.eval_every
    ckpt_steps = steps_per_epoch if t.checkpoint_every == "epoch" else t.checkpoint_every
    last_eval_step = rs["global_step"] if resumed_from else -1
    last_ckpt_step = rs["global_step"] if resumed_from else -1
    last_res = None

    def checkpoint():
        nonlocal last_ckpt_step
        protect = {rs["best_step"]} if rs["best_step"] is not None else set()
        path = st.save_checkpoint(accelerator, run_dir, rs["global_step"], dict(rs), t.keep_checkpoints, protect)
        last_ckpt_step = rs["global_step"]
        metrics.write({"type": "checkpoint", "step": rs["global_step"], "path": os.path.relpath(path, run_dir)})

    def evaluate() -> bool:
        """Evaluate, track the best; returns True when early stopping says stop."""
        nonlocal last_eval_step, last_res
        res = ev.evaluate(accelerator, model, val_dl, causal, len(splits.labels or []))
        res.step = rs["global_step"]
        last_res = res
        last_eval_step = rs["global_step"]
        rec = {"type": "eval", "step": rs["global_step"], "epoch": round(epoch_float(), 4), **res.metrics}
        metric = res.metrics.get(t.monitor)
        improved = metric is not None and ev.improves(t.monitor, metric, rs["best_metric"])
        if improved:
            rs["best_metric"], rs["best_step"] = metric, rs["global_step"]
            rs["evals_without_improvement"] = 0
        else:
            rs["evals_without_improvement"] += 1
        rec["best_step"] = rs["best_step"]
        metrics.write(rec)
        log("eval step {}: {}".format(rs["global_step"], ", ".join(
            f"{k}={v:.4f}" for k, v in res.metrics.items() if isinstance(v, float))))
        if improved and t.early_stopping_patience and last_ckpt_step != rs["global_step"]:
            checkpoint()  # keep the best model restorable
        return bool(t.early_stopping_patience and rs["evals_without_improvement"] >= t.early_stopping_patience)

    def epoch_float() -> float:
        return rs["global_step"] / steps_per_epoch

    # ---- loop ----
    model.train()
    stopped_early = False
    window = {"loss": 0.0, "n": 0, "examples": 0, "t0": time.perf_counter()}
    status = "completed"
    while rs["epoch"] < t.epochs and not stopped_early:
        sampler.epoch = rs["epoch"]
        dl = train_dl
        if rs["micro_in_epoch"]:
            dl = accelerator.skip_first_batches(train_dl, rs["micro_in_epoch"])
        for batch in dl:
            t_step = time.perf_counter()
            with accelerator.accumulate(model):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            labels=batch["labels"])
                accelerator.backward(out.loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            real, padded = padding_stats(batch)
            n_ex = batch["input_ids"].shape[0] * accelerator.num_processes
            rs["micro_in_epoch"] += 1
            rs["examples_seen"] += n_ex
            rs["real_tokens"] += real * accelerator.num_processes
            rs["padded_tokens"] += padded * accelerator.num_processes
            window["loss"] += out.loss.detach().float().item()
            window["n"] += 1
            window["examples"] += n_ex
            rs["train_time_s"] += time.perf_counter() - t_step
            if not accelerator.sync_gradients:
                continue
            rs["global_step"] += 1
            if rs["global_step"] % t.logging_every == 0 or rs["micro_in_epoch"] >= micro_per_epoch:
                dt = max(time.perf_counter() - window["t0"], 1e-9)
                loss = accelerator.reduce(torch.tensor(window["loss"] / max(window["n"], 1),
                                                       device=accelerator.device), "mean").item()
                metrics.write({"type": "train", "step": rs["global_step"], "epoch": round(epoch_float(), 4),
                               "loss": loss, "learning_rate": scheduler.get_last_lr()[0],
                               "examples_per_s": window["examples"] / dt})
                window.update(loss=0.0, n=0, examples=0, t0=time.perf_counter())
            if eval_steps and rs["global_step"] % eval_steps == 0 and t.eval_every != "epoch":
                stopped_early = evaluate()
                model.train()
            if ckpt_steps and t.checkpoint_every != "epoch" and rs["global_step"] % ckpt_steps == 0 \
                    and last_ckpt_step != rs["global_step"]:
                checkpoint()
            if stop.requested or stopped_early:
                break
        if stop.requested:
            if last_ckpt_step != rs["global_step"] or rs["global_step"] == 0:
                checkpoint()
            metrics.write({"type": "end", "step": rs["global_step"], "status": "interrupted",
                           "signal": stop.requested})
            log(f"Stopped by {stop.requested} at step {rs['global_step']}; checkpoint saved. "
                "Run the same command again to resume.")
            return st.PREEMPTED_EXIT
        if stopped_early:
            break
        rs["epoch"] += 1
        rs["micro_in_epoch"] = 0
        metrics.write({"type": "epoch_end", "epoch": rs["epoch"], "step": rs["global_step"]})
        if t.eval_every == "epoch":
            stopped_early = evaluate()
            model.train()
        if t.checkpoint_every == "epoch" and last_ckpt_step != rs["global_step"]:
            checkpoint()
    if last_eval_step != rs["global_step"] and not stopped_early:
        evaluate()
    if stopped_early:
        status = "early_stopped"
        log(f"Early stopping: {t.monitor} did not improve for {t.early_stopping_patience} evaluations; "
            f"best at step {rs['best_step']}")
    if last_ckpt_step != rs["global_step"]:
        checkpoint()

    # ---- final artifacts ----
    model_step = rs["global_step"]
    if t.early_stopping_patience and rs["best_step"] is not None and rs["best_step"] != rs["global_step"]:
        best = run_dir / st.CKPT_DIR / st.checkpoint_name(rs["best_step"])
        if best.exists():
            accelerator.load_state(str(best))
            model_step = rs["best_step"]
            log(f"Restored the best model (step {model_step})")
    ev.finish(accelerator, model, tokenizer, val_dl, val_ds, splits, job, run_dir, rs,
              status=status, model_step=model_step, n_params=n_params, metrics=metrics,
              steps_per_epoch=steps_per_epoch, last=last_res)
    return 0


if __name__ == "__main__":
    main()
