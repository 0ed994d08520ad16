"""Did the run learn well, and if not, why? One of four patterns, with the evidence in numbers and
what to try. Standard library only: it runs inside the training program at the end of every run,
on every provider, and `launch report` runs it again on any run directory (also one in progress).

The rules, first match wins; every threshold lives in `Thresholds` below:

| # | pattern      | rule (on metrics.jsonl)                                                          |
|---|--------------|----------------------------------------------------------------------------------|
| 1 | erratic      | a loss is NaN/inf, or training loss ends `diverge_rise` (25 %) above where it     |
|   |              | started (start/end = mean of the first/last `window` training records)           |
| 2 | erratic      | >= `osc_min_evals` (4) evaluations and validation loss changes direction at >=    |
|   |              | `osc_turn_frac` (60 %) of them with a median jump >= `osc_jump` (15 %) of its level|
| 3 | overfitting  | after the best evaluation, validation loss rose >= `overfit_rise` (10 %, and by   |
|   |              | >= `overfit_min_abs` 0.02) while training loss fell >= `train_kept_falling` (10 %)|
|   |              | since; one evaluation after the best is weaker evidence: it must rise >=         |
|   |              | `overfit_rise_single` (20 %)                                                     |
| 4 | overfitting  | validation loss has not improved for >= `stall_evals` (3) evaluations while       |
|   |              | training loss fell >= `stall_train_drop` (50 %): memorising, not generalising    |
|   |              | or (classification, >= `stall_evals` evaluations) training loss fell >= 50 %      |
|   |              | while the best validation loss never got `memorise_val_gain` (5 %) below the loss |
|   |              | of a uniform guess ln(K): the model learns the training set and nothing else     |
| 5 | underfitting | training loss fell < `underfit_train_drop` (10 %) and is still high: >=           |
|   |              | `underfit_loss_frac` (50 %) of chance loss ln(K) (classification), or validation |
|   |              | loss also fell < 10 % (causal-lm)                                                 |
| 6 | underfitting | classification: best validation accuracy closes < `underfit_acc_gain` (10 %) of   |
|   |              | the gap from chance (the majority-class share, at least 1/K) to perfect           |
| 7 | erratic      | a training loss record climbs back >= `spike_frac` (50 %) of the progress made so |
|   |              | far (first record to the lowest before it), once that progress is >=             |
|   |              | `spike_min_progress` (20 %) of the start; short epoch-tail windows are skipped   |
| 8 | healthy      | none of the above                                                                |

Very short runs (one or two evaluations, as with eval_every: epoch and 1-2 epochs) are judged on
the training-loss windows plus the evaluations there are, and chance level; `confidence` is then
"low". Overfitting comes before underfitting: a model that memorises a tiny training set scores
near chance on validation, but its training loss says why.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from launcher.report.rundata import RunData, load_run

PATTERNS = ("healthy", "overfitting", "underfitting", "erratic")


@dataclass(frozen=True)
class Thresholds:
    window: int = 3                # training records averaged for the start/end level (fewer in short runs)
    diverge_rise: float = 0.25     # end train loss above start by this fraction -> erratic (diverging)
    overfit_rise: float = 0.10     # last validation loss above the best by this fraction ...
    overfit_min_abs: float = 0.02  # ... and by at least this much (loss units)
    overfit_rise_single: float = 0.20  # the rise needed when only one evaluation follows the best
    train_kept_falling: float = 0.10  # training loss fell by this fraction since the best evaluation
    stall_evals: int = 3           # evaluations without improvement ...
    stall_train_drop: float = 0.50  # ... while training loss fell by this fraction -> overfitting
    memorise_val_gain: float = 0.05  # best validation loss not this far below ln(K) while training
                                     # loss fell stall_train_drop -> overfitting (memorising)
    underfit_train_drop: float = 0.10  # training loss fell by less than this fraction ...
    underfit_loss_frac: float = 0.50   # ... and is still >= this share of chance loss ln(K)
    underfit_acc_gain: float = 0.10    # best accuracy closes less than this share of chance -> 1
    osc_min_evals: int = 4
    osc_turn_frac: float = 0.60
    osc_jump: float = 0.15
    spike_frac: float = 0.50       # a training record gives back this share of the progress so far ...
    spike_min_progress: float = 0.20  # ... once the loss had fallen by this share of its start


THRESHOLDS = Thresholds()


def _f(x: float) -> str:
    if x is None or not math.isfinite(x):
        return str(x)
    a = abs(x)
    return f"{x:.2e}" if (a and a < 0.001) or a >= 1e5 else f"{x:.3f}" if a < 10 else f"{x:.1f}"


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def _level(losses: list[float], th: Thresholds, head: bool) -> float:
    k = max(1, min(th.window, len(losses) // 4))
    return _mean(losses[:k] if head else losses[-k:])


def _chance(run: RunData) -> tuple[Optional[float], Optional[float]]:
    """(chance accuracy, chance loss): majority-class share (at least 1/K) and ln(K)."""
    k = run.num_labels
    if not k or k < 2:
        return None, None
    acc = 1 / k
    cm = run.eval_metrics.get("confusion_matrix")
    if cm:
        rows = [sum(r) for r in cm]
        if sum(rows):
            acc = max(acc, max(rows) / sum(rows))
    return acc, math.log(k)


def diagnose(run: RunData, th: Thresholds = THRESHOLDS) -> dict:
    """The diagnosis of a loaded run: pattern, evidence, advice, and the numbers behind them."""
    train = run.series("loss", "train")
    evals = run.series("eval_loss")
    acc = run.series("eval_accuracy")
    chance_acc, chance_loss = _chance(run)
    lr = max((r.get("learning_rate") or 0.0 for r in run.train), default=0.0)
    found: list[tuple[str, list[str], str]] = []  # (pattern, evidence, rule)
    tl = [y for _, y in train]
    start = _level(tl, th, True) if tl else None
    end = _level(tl, th, False) if tl else None
    measures = {"train_loss_start": start, "train_loss_end": end, "evaluations": len(evals),
                "train_records": len(tl), "chance_accuracy": chance_acc, "chance_loss": chance_loss,
                "peak_learning_rate": lr or None}

    # 1 erratic: non-finite or diverging
    bad = [s for s, y in train + evals if not math.isfinite(y)]
    if bad:
        found.append(("erratic", [f"the loss became non-finite (NaN or inf) at step {bad[0]}"], "non_finite"))
    elif tl and len(tl) >= 2 and end > start * (1 + th.diverge_rise):
        found.append(("erratic", [f"training loss rose from {_f(start)} to {_f(end)} "
                                  f"(+{_pct(end / start - 1)}): training is diverging"], "diverging"))

    fin_e = [(s, y) for s, y in evals if math.isfinite(y)]
    if not found and len(fin_e) >= th.osc_min_evals:
        d = [b - a for (_, a), (_, b) in zip(fin_e, fin_e[1:])]
        turns = sum(1 for a, b in zip(d, d[1:]) if a * b < 0)
        level = statistics.median(y for _, y in fin_e)
        jump = statistics.median(abs(x) for x in d)
        if turns >= th.osc_turn_frac * (len(d) - 1) and level > 0 and jump >= th.osc_jump * level:
            found.append(("erratic", [
                f"validation loss changed direction {turns} times in {len(fin_e)} evaluations, "
                f"typically by {_f(jump)} ({_pct(jump / level)} of its level {_f(level)})"], "oscillating"))
    if not found and len(fin_e) >= 2:
        b = min(range(len(fin_e)), key=lambda i: (fin_e[i][1], i))
        best_s, best_v = fin_e[b]
        last_s, last_v = fin_e[-1]
        measures.update(eval_loss_first=fin_e[0][1], eval_loss_best=best_v, eval_loss_last=last_v,
                        eval_loss_best_step=best_s)
        before = [y for s, y in train if s <= best_s and math.isfinite(y)]
        after = [y for s, y in train if s > best_s and math.isfinite(y)]
        t_at_best = _level(before, th, False) if before else start
        t_end = _level(after, th, False) if after else None
        since = len(fin_e) - 1 - b
        if t_at_best and t_end is not None and since >= 1:
            fell = 1 - t_end / t_at_best if t_at_best > 0 else 0.0
            rise = last_v - best_v
            train_txt = f"training loss kept falling, {_f(t_at_best)} → {_f(t_end)}"
            need = th.overfit_rise if since >= 2 else th.overfit_rise_single
            if rise >= th.overfit_min_abs and last_v >= best_v * (1 + need) \
                    and fell >= th.train_kept_falling:
                found.append(("overfitting", [
                    f"validation loss rose over the last {since} evaluation{'s' * (since > 1)}, "
                    f"{_f(best_v)} → {_f(last_v)} (+{_pct(rise / best_v)}, best at step {best_s}), "
                    f"while {train_txt}"], "validation_rise"))
            elif since >= th.stall_evals and fell >= th.stall_train_drop:
                found.append(("overfitting", [
                    f"validation loss has not improved for {since} evaluations (best {_f(best_v)} at "
                    f"step {best_s}) while {train_txt} (-{_pct(fell)})"], "validation_stall"))
        total_drop = 1 - end / start if start and end is not None and start > 0 else 0.0
        if not found and chance_loss and len(fin_e) >= th.stall_evals \
                and total_drop >= th.stall_train_drop and best_v >= (1 - th.memorise_val_gain) * chance_loss:
            found.append(("overfitting", [
                f"training loss fell {_f(start)} → {_f(end)} (-{_pct(total_drop)}) while validation loss "
                f"never got below the loss of a uniform guess, ln({run.num_labels}) = {_f(chance_loss)} "
                f"(best {_f(best_v)} at step {best_s}): the model memorises the training set"], "memorising"))

    if not found and tl:
        drop = 1 - end / start if start and start > 0 else 0.0
        measures["train_loss_drop"] = drop
        still_high = end >= th.underfit_loss_frac * chance_loss if chance_loss else \
            (len(fin_e) < 2 or 1 - min(y for _, y in fin_e) / fin_e[0][1] < th.underfit_train_drop)
        if len(tl) >= 2 and drop < th.underfit_train_drop and still_high:
            ev = [f"training loss barely moved, {_f(start)} → {_f(end)} ({'-' if drop >= 0 else '+'}"
                  f"{_pct(abs(drop))}, under {_pct(th.underfit_train_drop)})"]
            if chance_loss:
                ev.append(f"it stays near the loss of a uniform guess, ln({run.num_labels}) = {_f(chance_loss)}")
            found.append(("underfitting", ev, "train_flat"))
    if not found and acc and chance_acc is not None:
        best_acc = max(y for _, y in acc if math.isfinite(y)) if any(math.isfinite(y) for _, y in acc) else 0.0
        measures["accuracy_best"] = best_acc
        gain = (best_acc - chance_acc) / (1 - chance_acc) if chance_acc < 1 else 1.0
        if gain < th.underfit_acc_gain:
            found.append(("underfitting", [
                f"best validation accuracy {_f(best_acc)} is at chance level ({_f(chance_acc)}: "
                f"{'the majority class' if chance_acc > 1 / run.num_labels + 1e-9 else f'1/{run.num_labels}'})"
                + (f"; training loss {_f(start)} → {_f(end)}" if tl else "")], "chance_accuracy"))

    # a record averaged over far fewer steps than the others (the tail of an epoch) is noisier:
    # the spike rule skips those
    gaps = [b - a for (a, _), (b, _) in zip(train, train[1:])]
    typical = statistics.median(gaps) if gaps else 0
    full = [(s, y) for (s, y), g in zip(train[1:], gaps) if g >= 0.5 * typical]
    if not found and len(tl) >= 4:
        lowest = tl[0]
        prev = tl[0]
        for s, y in full:
            progress = tl[0] - lowest
            if progress >= th.spike_min_progress * tl[0] and y - lowest >= th.spike_frac * progress and y > prev:
                found.append(("erratic", [
                    f"training loss jumped back to {_f(y)} at step {s} after reaching {_f(lowest)} "
                    f"(losing {_pct((y - lowest) / progress)} of the progress from {_f(tl[0])})"], "spike"))
                break
            lowest, prev = min(lowest, y), y

    if found:
        pattern, evidence, rule = found[0]
    else:
        pattern, rule, evidence = "healthy", "none", _healthy_evidence(run, train, fin_e, acc, chance_acc, start, end)
    advice = _advice(pattern, run, fin_e, lr)
    short = len(fin_e) < 3 or len(tl) < 3
    if short:
        evidence.append(f"a short run ({len(fin_e)} evaluation{'s' * (len(fin_e) != 1)}, {len(tl)} training "
                        "records): judged on the training-loss windows and the evaluations there are")
    best, model = run.best_step, run.model_step
    if run.status == "early_stopped":
        last = run.summary.get("global_step") or (run.end or {}).get("step")
        evidence.append(f"early stopping ended the run at step {last}: {run.monitor} had not improved since "
                        f"step {best}; the saved model is the one from step {model}")
    if run.in_progress:
        evidence.append(f"the run is still in progress (status {run.status}): a provisional diagnosis")
    return {
        "pattern": pattern, "rule": rule, "summary": f"{pattern}: {evidence[0]}" if evidence else pattern,
        "evidence": evidence, "advice": advice, "confidence": "low" if short or run.in_progress else "high",
        "best_step": best, "model_step": model, "in_progress": run.in_progress,
        "measures": {k: v for k, v in measures.items() if v is not None},
        "thresholds": asdict(th),
    }


def _healthy_evidence(run, train, fin_e, acc, chance_acc, start, end) -> list[str]:
    ev = []
    if len(fin_e) >= 2:
        b = min(y for _, y in fin_e)
        ev.append(f"validation loss fell {_f(fin_e[0][1])} → {_f(b)} over {len(fin_e)} evaluations")
    elif fin_e:
        ev.append(f"validation loss {_f(fin_e[0][1])} after one evaluation")
    if train:
        ev.append(f"training loss fell {_f(start)} → {_f(end)}")
    if acc and chance_acc is not None:
        ev.append(f"best validation accuracy {_f(max(y for _, y in acc))}, well above chance ({_f(chance_acc)})")
    if not ev:
        ev.append("no training or validation measurements yet")
    return ev


def _advice(pattern: str, run: RunData, fin_e, lr: float) -> list[str]:
    lr_txt = f" (peak now {lr:.2g})" if lr else ""
    if pattern == "overfitting":
        out = ["more training data (or augmentation): the model memorises the examples it has",
               "regularisation: raise training.weight_decay, or train fewer epochs",
               "early stopping: training.early_stopping_patience: 2 stops at the plateau and keeps the best checkpoint"]
        if fin_e:
            b = min(fin_e, key=lambda p: p[1])[0]
            spe = run.start.get("steps_per_epoch") or run.summary.get("steps_per_epoch")
            if spe:
                out.append(f"validation loss was best at step {b} (epoch {b / spe:.1f}): about that many epochs is enough")
        return out
    if pattern == "underfitting":
        return [f"a higher learning rate{lr_txt}: 2e-5 to 1e-4 is usual for fine-tuning",
                "more epochs (training.epochs), or more data per epoch",
                "a bigger model, if loss stays high with a sound learning rate"]
    if pattern == "erratic":
        return [f"a lower learning rate{lr_txt}: try a third of it",
                "a larger batch (training.batch_size, or training.gradient_accumulation_steps)",
                "a longer warmup (training.warmup_ratio)"]
    out = ["nothing to fix"]
    if len(fin_e) >= 2 and fin_e[-1][1] <= min(y for _, y in fin_e) + 1e-12 and fin_e[-2][1] > 0 \
            and (fin_e[-2][1] - fin_e[-1][1]) / fin_e[-2][1] >= 0.02:
        out = ["validation loss was still falling at the end: more epochs may help a little more"]
    return out


def diagnose_run(run_dir: Path, summary: Optional[dict] = None) -> dict:
    """Read the run directory (with `summary` as written so far) and diagnose it."""
    run = load_run(Path(run_dir))
    if summary:
        run.summary = {**run.summary, **summary}
    return diagnose(run)
