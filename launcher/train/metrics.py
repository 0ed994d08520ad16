"""Evaluation metrics computed with numpy (no `evaluate`: it downloads scripts from the hub)."""

from __future__ import annotations

import math

import numpy as np


def classification_metrics(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> dict[str, float]:
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    out = {"accuracy": float((labels == preds).mean()) if len(labels) else 0.0}
    precisions, recalls, f1s = [], [], []
    for c in range(num_labels):
        tp = int(((preds == c) & (labels == c)).sum())
        fp = int(((preds == c) & (labels != c)).sum())
        fn = int(((preds != c) & (labels == c)).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        precisions.append(p)
        recalls.append(r)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    out["precision_macro"] = float(np.mean(precisions))
    out["recall_macro"] = float(np.mean(recalls))
    out["f1_macro"] = float(np.mean(f1s))
    return out


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> list[list[int]]:
    m = np.zeros((num_labels, num_labels), dtype=np.int64)
    for t, p in zip(np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)):
        m[t, p] += 1
    return m.tolist()


def perplexity(mean_loss: float) -> float:
    return float(math.exp(min(mean_loss, 50.0)))


def is_better(metric: str, new: float, best: float | None) -> bool:
    """Loss-like metrics improve downwards, the rest upwards."""
    if best is None:
        return True
    lower = "loss" in metric or "perplexity" in metric
    return new < best - 1e-12 if lower else new > best + 1e-12
