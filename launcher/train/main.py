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

from launcher.errors import LauncherError, UsageError, first_line
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
    _redact_output()
    try:
        code = run(args)
    except LauncherError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        code = e.exit_code
    except Exception as e:  # noqa: BLE001 - full traceback to the log, then one summary line
        import traceback
        traceback.print_exc()
        print(f"error: {type(e).__name__}: {first_line(e)}", file=sys.stderr, flush=True)
        code = 1
    _record_exit(args.output_dir, code)
    sys.exit(code)


def _record_exit(output_dir: str, code: int) -> None:
    """Tell launcher.train.launch our real exit code (accelerate reports every failure as 1)."""
    from launcher.train.launch import EXIT_FILE
    if os.environ.get("RANK", "0") != "0":
        return
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / EXIT_FILE).write_text(json.dumps({"exit_code": code, "time": time.time()}))
    except OSError:
        pass


class _RedactingStream:
    """Wraps stdout/stderr so no secret value (HF_TOKEN, provider keys) reaches train.log or the
    provider's log service, whatever a library prints."""

    def __init__(self, stream, redact):
        self._s, self._redact = stream, redact

    def write(self, text):
        return self._s.write(self._redact(text) if isinstance(text, str) else text)

    def __getattr__(self, name):
        return getattr(self._s, name)


def _redact_output() -> None:
    try:
        from launcher.redact import redact, secret_values
    except ImportError:  # an older bundle without it
        return
    if secret_values():
        sys.stdout = _RedactingStream(sys.stdout, redact)
        sys.stderr = _RedactingStream(sys.stderr, redact)


class _Stop:
    """SIGTERM (preemption) or SIGINT (Ctrl-C): finish the step, checkpoint, exit."""

    def __init__(self):
        self.requested = None
        self._group = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: give up at once
        self.requested = signal.Signals(signum).name

    def check(self, accelerator) -> bool:
        """True when any process was told to stop. With several processes the flag is agreed on
        every step, so all of them reach the checkpoint's collectives at the same step instead of
        one waiting there while another is still in backward(). The agreement is a host-only
        all-reduce of a CPU tensor over its own gloo group: reducing a GPU tensor and reading it
        back would make every process wait for its GPU to finish the step, every step."""
        if accelerator.num_processes > 1:
            import torch
            import torch.distributed as dist
            if self._group is None:  # every process gets here at its first step: a collective call
                try:
                    self._group = dist.new_group(backend="gloo")
                except (RuntimeError, ValueError) as e:  # a torch built without gloo: on the device
                    print(f"launcher: no gloo group ({first_line(e, 120)}); stop flags go over the device",
                          flush=True)
                    self._group = False
            if self._group is False:
                flag = torch.tensor([0 if self.requested is None else 1], device=accelerator.device)
                flag = accelerator.reduce(flag, "sum")
            else:
                flag = torch.tensor([0 if self.requested is None else 1], dtype=torch.int32)
                dist.all_reduce(flag, group=self._group)
            if int(flag) > 0 and self.requested is None:
                self.requested = "SIGTERM"
        return self.requested is not None


def _resume_source(ref: str, run_dir: Path) -> Path:
    """--resume-from as a local folder; s3:// and gs:// URIs are fetched first (launcher.resume
    ships in the bundle; boto3 / google-cloud-storage come with the provider's image)."""
    if "://" in ref:
        from launcher.resume import fetch_uri
        return fetch_uri(ref, run_dir / ".resume-source")
    return Path(ref).expanduser().resolve()


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
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    from launcher.train import evaluate as ev
    from launcher.train.data import Collator, LengthGroupedBatches, load_splits, tokenize
    from launcher.train.model import build_model, count_parameters, load_tokenizer, param_groups

    t = job.training
    gpu = torch.cuda.is_available()
    # cpu=True with no GPU: several CPU processes then join with gloo (MULTI_CPU). On a GPU,
    # batches are collated into pinned memory and copied without blocking, so the host prepares
    # batch k+1 while the GPU still runs step k (the loop never waits on the GPU, below).
    accelerator = Accelerator(gradient_accumulation_steps=t.gradient_accumulation_steps,
                              mixed_precision=_mixed_precision(job), cpu=not gpu,
                              dataloader_config=DataLoaderConfiguration(non_blocking=gpu))
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
    # Its own generator: starting an iterator draws a seed, and from torch's global RNG that draw
    # would shift dropout after a mid-epoch resume (the run would not match an uninterrupted one).
    train_dl = torch.utils.data.DataLoader(train_feats, batch_sampler=sampler, collate_fn=collate,
                                           generator=torch.Generator().manual_seed(t.seed), pin_memory=gpu)
    val_dl = ev.eval_loader(val_ds, t.batch_size * 2, collate)

    # ---- model, optimizer, schedule ----
    model = build_model(job, base, tokenizer, splits.labels)
    n_params = count_parameters(model)
    try:  # fused AdamW: one kernel for all parameters (5x faster steps on CPU than the for-each one)
        optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an old torch or a device without it
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
    rs["processes"] = accelerator.num_processes
    resumed_from = None
    if not args.fresh:
        # The run directory's own checkpoints win: a job restarted by its platform (spot
        # recovery) with the same --resume-from continues from where it got to, not from there.
        ckpt = st.latest_checkpoint(run_dir)
        if ckpt is None and args.resume_from:
            with accelerator.main_process_first():  # one download per machine, not one per process
                src = _resume_source(args.resume_from, run_dir)
            ckpt = st.find_checkpoint(src) if src.exists() else None
            if ckpt is None:
                raise UsageError(f"--resume-from {args.resume_from}: no complete checkpoint there",
                                 hint="name a run directory, one of its checkpoints/step-N folders, "
                                      "or a folder fetched back from a provider")
        if ckpt is not None:
            saved = st.adapt_position(st.read_state(ckpt), accelerator.num_processes)
            if saved.get("job_sha256") not in (None, job_sha) and ckpt.parent.parent == run_dir:
                raise UsageError(
                    f"{run_dir} holds checkpoints of a different job",
                    hint="use another output.dir, or --fresh to start over (the old run is kept aside)")
            try:
                accelerator.load_state(str(ckpt))
            except Exception as e:  # noqa: BLE001 - a checkpoint of another model or shape
                raise UsageError(f"cannot resume from {ckpt}: {type(e).__name__}: {first_line(e, 200)}",
                                 hint="resume only a run of the same model and task, or pass --fresh") from None
            rs.update({k: v for k, v in saved.items() if k in rs})
            rs["job_sha256"], rs["processes"] = job_sha, accelerator.num_processes
            resumed_from = ckpt
            log(f"Resuming from {ckpt} (step {rs['global_step']}, epoch {rs['epoch']})")
    if resumed_from is not None and resumed_from.parent.parent != run_dir and main_proc:
        st.carry_metrics(resumed_from.parent.parent, run_dir)  # continuous curves across providers
    if resumed_from is not None:
        metrics.truncate_after(rs["global_step"])
    elif main_proc and metrics.path.exists():
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

    # Per-step figures stay on the device and are read back only when logged or saved: a read
    # (.item(), int(tensor)) every step would make the host wait for the GPU each step, and the
    # next batch could no longer be prepared while the GPU computes.
    pending = {"loss": torch.zeros((), device=accelerator.device),
               "real": torch.zeros((), dtype=torch.long, device=accelerator.device)}

    def flush_tokens():
        rs["real_tokens"] += int(pending["real"].item()) * accelerator.num_processes
        pending["real"].zero_()

    def checkpoint():
        nonlocal last_ckpt_step
        flush_tokens()
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
    window = {"n": 0, "examples": 0, "t0": time.perf_counter()}
    status = "completed"
    while rs["epoch"] < t.epochs and not stopped_early:
        sampler.epoch = rs["epoch"]
        dl = train_dl
        if rs["micro_in_epoch"]:
            dl = accelerator.skip_first_batches(train_dl, rs["micro_in_epoch"])
        t_step = time.perf_counter()  # loop time counts fetching the batch too; eval/checkpoints not
        for batch in dl:
            with accelerator.accumulate(model):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            labels=batch["labels"])
                accelerator.backward(out.loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            mask = batch["attention_mask"]
            n_ex = mask.shape[0] * accelerator.num_processes
            rs["micro_in_epoch"] += 1
            rs["examples_seen"] += n_ex
            pending["real"] += mask.sum()
            rs["padded_tokens"] += mask.numel() * accelerator.num_processes
            pending["loss"] += out.loss.detach().float()
            window["n"] += 1
            window["examples"] += n_ex
            now = time.perf_counter()
            rs["train_time_s"] += now - t_step
            t_step = now
            if not accelerator.sync_gradients:
                continue
            rs["global_step"] += 1
            if rs["global_step"] % t.logging_every == 0 or rs["micro_in_epoch"] >= micro_per_epoch:
                dt = max(time.perf_counter() - window["t0"], 1e-9)
                loss = accelerator.reduce(pending["loss"] / max(window["n"], 1), "mean").item()
                pending["loss"].zero_()
                flush_tokens()
                metrics.write({"type": "train", "step": rs["global_step"], "epoch": round(epoch_float(), 4),
                               "loss": loss, "learning_rate": scheduler.get_last_lr()[0],
                               "examples_per_s": window["examples"] / dt})
                window.update(n=0, examples=0, t0=time.perf_counter())
            if eval_steps and rs["global_step"] % eval_steps == 0 and t.eval_every != "epoch":
                stopped_early = evaluate()
                model.train()
            if ckpt_steps and t.checkpoint_every != "epoch" and rs["global_step"] % ckpt_steps == 0 \
                    and last_ckpt_step != rs["global_step"]:
                checkpoint()
            t_step = time.perf_counter()
            if stop.check(accelerator) or stopped_early:
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
    flush_tokens()
    ev.finish(accelerator, model, tokenizer, val_dl, val_ds, splits, job, run_dir, rs,
              status=status, model_step=model_step, n_params=n_params, metrics=metrics,
              steps_per_epoch=steps_per_epoch, last=last_res)
    return 0


if __name__ == "__main__":
    main()
