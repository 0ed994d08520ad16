"""learning_curves.png and confusion_matrix.png (matplotlib, Agg backend; imported only here).

learning_curves.png: left, training loss and validation loss against step; right, validation
accuracy (and macro F1) for classification or validation perplexity for causal-lm. Dotted grey
lines mark epoch boundaries, a green dashed line and star the best checkpoint, and a note the step
the saved model came from when that differs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _finite(s):
    return [(x, y) for x, y in s if math.isfinite(y)]


def learning_curves(run, dest: Path, diagnosis: Optional[dict] = None) -> Path:
    plt = _pyplot()
    fig, (ax_loss, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    train = _finite(run.series("loss", "train"))
    evals = _finite(run.series("eval_loss"))
    if train:
        ax_loss.plot(*zip(*train), color="tab:blue", lw=1.4, label="training loss")
    if evals:
        ax_loss.plot(*zip(*evals), color="tab:orange", lw=1.6, marker="o", ms=4, label="validation loss")
    if run.causal:
        key, name = "eval_perplexity", "validation perplexity"
        metric = _finite(run.series(key))
        if metric:
            ax_m.plot(*zip(*metric), color="tab:purple", marker="o", ms=4, label=name)
            if max(y for _, y in metric) / max(min(y for _, y in metric), 1e-9) > 20:
                ax_m.set_yscale("log")
    else:
        key, name = "eval_accuracy", "validation accuracy"
        metric = _finite(run.series(key))
        if metric:
            ax_m.plot(*zip(*metric), color="tab:green", marker="o", ms=4, label=name)
        f1 = _finite(run.series("eval_f1_macro"))
        if f1:
            ax_m.plot(*zip(*f1), color="tab:olive", marker=".", ms=4, lw=1, ls="--", label="validation F1 (macro)")
        chance = ((diagnosis or {}).get("measures") or {}).get("chance_accuracy") or \
            (1 / run.num_labels if run.num_labels else None)
        if chance:
            ax_m.axhline(chance, color="grey", lw=0.8, ls=":", label=f"chance ({chance:.2f})")
    best, model_step = run.best_step, run.model_step
    for ax in (ax_loss, ax_m):
        every = -(-len(run.epoch_ends) // 30)  # at most 30 epoch lines
        for i, s in enumerate(run.epoch_ends[every - 1::every]):
            ax.axvline(s, color="grey", lw=0.7, ls=":", label="epoch end" + (f" (every {every})" if every > 1 else "") if i == 0 and ax is ax_loss else None)
        if best is not None:
            ax.axvline(best, color="tab:green", lw=1.0, ls="--",
                       label=f"best checkpoint (step {best})" if ax is ax_loss else None)
        ax.set_xlabel("step")
        ax.grid(alpha=0.25)
    if best is not None:
        by_step = dict(evals)
        if best in by_step:
            ax_loss.plot([best], [by_step[best]], marker="*", ms=14, color="tab:green", zorder=5)
        m = dict(metric)
        if best in m:
            ax_m.plot([best], [m[best]], marker="*", ms=14, color="tab:green", zorder=5)
    if model_step is not None and model_step != best:
        ax_loss.axvline(model_step, color="tab:red", lw=1.0, ls="-.", label=f"saved model (step {model_step})")
    total = run.start.get("total_steps")
    for ax in (ax_loss, ax_m):
        if total:
            ax.set_xlim(0, total * 1.02)
    if not metric:
        ax_m.text(0.5, 0.5, "no evaluation yet", transform=ax_m.transAxes, ha="center", va="center", color="grey")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss")
    ax_m.set_title(name)
    ax_m.set_ylabel(name.split()[-1])
    ax_loss.legend(fontsize=8, loc="best")
    if ax_m.lines:
        ax_m.legend(fontsize=8, loc="best")
    title = run.run_dir.name
    if diagnosis:
        title += f"  ·  diagnosis: {diagnosis.get('pattern')}"
    if run.in_progress:
        title += "  ·  in progress"
    fig.suptitle(title, fontsize=11)
    return _save(plt, fig, dest / "learning_curves.png")


def confusion_matrix(labels: list, matrix: list[list[int]], dest: Path) -> Path:
    plt = _pyplot()
    n = len(labels)
    size = max(3.5, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 0.8, size), dpi=110)
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    top = max((max(r) for r in matrix if r), default=0)
    for i, r in enumerate(matrix):
        for j, v in enumerate(r):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=9,
                    color="white" if top and v > top / 2 else "black")
    ax.set_xticks(range(n), [str(x) for x in labels], rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), [str(x) for x in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (validation)")
    return _save(plt, fig, dest / "confusion_matrix.png")


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
