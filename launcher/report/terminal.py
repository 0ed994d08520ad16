"""Learning curves drawn in the terminal with plain characters (no colour, no extra package), so
they read the same in a terminal, a CI log and a provider's log viewer.

    loss  0.69 |..                          |
               |  ..o       |               |
               |     ....   |    o      B   |
          0.21 |        ........o......o....|
               +----------------------------+
                0          step           126
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

Series = Sequence[tuple[float, float]]


def _fmt(v: float) -> str:
    if v == 0 or 0.01 <= abs(v) < 10000:
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.4g}"
    return f"{v:.2e}"


def chart(series: dict[str, tuple[str, Series]], *, title: str = "", width: int = 60, height: int = 10,
          vlines: Sequence[float] = (), marks: Optional[dict[str, float]] = None,
          x_range: Optional[tuple[float, float]] = None) -> list[str]:
    """Lines of text: each series drawn with its own character, `vlines` (epoch boundaries) as
    ':' and each of `marks` ({char: step}, e.g. the best checkpoint) as a column of that char
    on the x-axis. Non-finite values are left out. Later series draw over earlier ones."""
    n_epochs = len(vlines)
    pts = [(x, y) for _, s in series.values() for x, y in s if math.isfinite(y)]
    if not pts:
        return [f"{title}: nothing to draw yet"] if title else []
    xs = [x for x, _ in pts]
    ys = [y for _, y in pts]
    x0, x1 = x_range or (min(xs), max(xs))
    y0, y1 = min(ys), max(ys)
    if x1 <= x0:
        x1 = x0 + 1
    if y1 - y0 < 1e-12:
        pad = abs(y0) * 0.05 or 0.5
        y0, y1 = y0 - pad, y1 + pad
    grid = [[" "] * width for _ in range(height)]

    def col(x: float) -> int:
        return min(width - 1, max(0, round((x - x0) / (x1 - x0) * (width - 1))))

    def row(y: float) -> int:
        return min(height - 1, max(0, round((y1 - y) / (y1 - y0) * (height - 1))))

    vlines = list(vlines)
    if len(vlines) > max(1, width // 6):  # many short epochs: mark every n-th boundary
        n = -(-len(vlines) // max(1, width // 6))
        vlines = vlines[n - 1::n]
    for v in vlines:
        if x0 < v < x1:
            c = col(v)
            for r in range(height):
                grid[r][c] = ":"
    for ch, s in series.values():
        for x, y in s:
            if math.isfinite(y):
                grid[row(y)][col(x)] = ch
    label_w = max(len(_fmt(y1)), len(_fmt(y0)))
    lines = [title] if title else []
    for r in range(height):
        label = _fmt(y1) if r == 0 else _fmt(y0) if r == height - 1 else ""
        lines.append(f"{label:>{label_w}} |{''.join(grid[r])}|")
    axis = ["-"] * width
    for ch, x in (marks or {}).items():
        if x is not None and x0 <= x <= x1:
            axis[col(x)] = ch
    lines.append(f"{'':>{label_w}} +{''.join(axis)}+")
    left, right = f"{x0:g}", f"{x1:g}"
    mid = "step"
    gap = max(1, width - len(left) - len(right) - len(mid))
    lines.append(f"{'':>{label_w}}  {left}{' ' * (gap // 2)}{mid}{' ' * (gap - gap // 2)}{right}")
    legend = "   ".join(f"{ch} {name}" for name, (ch, _) in series.items())
    extras = []
    if vlines:
        extras.append(": epoch end" if n_epochs == len(vlines) else
                      ": epoch ends (every few)")
    for ch, x in (marks or {}).items():
        if x is not None:
            extras.append(f"{ch} {'best' if ch == 'B' else 'saved model'} (step {x:g})")
    lines.append(f"{'':>{label_w}}  {legend}" + (("   " + "   ".join(extras)) if extras else ""))
    return lines


def learning_curves(run, width: int = 60, height: int = 10) -> list[str]:
    """Loss panel (train '.', validation 'o') and a metric panel (accuracy or perplexity)."""
    train = run.series("loss", "train")
    evals = run.series("eval_loss")
    steps = [x for x, _ in train + evals]
    total = run.start.get("total_steps")
    x_range = (0, max(steps + ([total] if total else []))) if steps else None
    marks = {"B": run.best_step}
    if run.model_step is not None and run.model_step != run.best_step:
        marks["M"] = run.model_step
    out = chart({"train loss": (".", train), "validation loss": ("o", evals)}, title="loss",
                width=width, height=height, vlines=run.epoch_ends, marks=marks, x_range=x_range)
    key, name = ("eval_perplexity", "validation perplexity") if run.causal else \
        ("eval_accuracy", "validation accuracy")
    metric = run.series(key)
    if metric:
        out += [""] + chart({name: ("o", metric)}, title=name, width=width, height=max(4, height // 2),
                            vlines=run.epoch_ends, marks=marks, x_range=x_range)
    return out


def confusion_rows(labels: list, matrix: list[list[int]]) -> tuple[list[str], list[list]]:
    """Columns and rows of a confusion matrix table: true label down, prediction across."""
    cols = ["true \\ predicted", *[str(x) for x in labels], "recall"]
    rows = []
    for name, r in zip(labels, matrix):
        n = sum(r)
        i = len(rows)
        rows.append([str(name), *r, f"{r[i] / n:.3f}" if n else "-"])
    return cols, rows
