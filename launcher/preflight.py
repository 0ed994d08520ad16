"""Checks on the job's local data before anything is built or sent: cheap, standard library only.

A missing file, a missing text or label column, or a single-class training set becomes one
located error line instead of a failure minutes later on a rented GPU.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from launcher.jobfile import LoadedJob, local_data_files

SAMPLE_ROWS = 200_000


def _columns_and_labels(path: Path, label_col: str | None, encoding: str) -> tuple[list[str], set[str]] | None:
    """(columns, labels seen) from a csv/json/jsonl file; None for formats not read here."""
    suffix = path.suffix.lower()
    labels: set[str] = set()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding=encoding) as f:
                reader = csv.DictReader(f)
                cols = list(reader.fieldnames or [])
                if label_col and label_col in cols:
                    for i, row in enumerate(reader):
                        if i >= SAMPLE_ROWS or len(labels) > 1000:
                            break
                        labels.add(str(row.get(label_col)))
                return cols, labels
        if suffix in (".jsonl", ".json"):
            with path.open(encoding=encoding) as f:
                head = f.read(1)
                f.seek(0)
                if suffix == ".json" and head == "[":
                    rows = json.load(f)
                else:
                    rows = (json.loads(line) for line in f if line.strip())
                cols: list[str] = []
                for i, row in enumerate(rows):
                    if i >= SAMPLE_ROWS:
                        break
                    if isinstance(row, dict):
                        for k in row:
                            if k not in cols:
                                cols.append(k)
                        if label_col and label_col in row:
                            labels.add(str(row[label_col]))
                return cols, labels
    except UnicodeDecodeError:
        return [], set()
    except (ValueError, OSError):
        return None
    return None


def prepare_and_check(loaded: LoadedJob) -> None:
    from launcher.recipes import ensure_prepared

    job = loaded.job
    files = local_data_files(loaded)
    if job.data.prepare and "train" in files:
        ensure_prepared(job.data.prepare, files["train"], files.get("validation"))
    for key, path in files.items():
        field = f"data.{key}"
        if not path.is_file():
            raise loaded.error(field, f"no such data file: {path}")
        if path.stat().st_size == 0:
            raise loaded.error(field, f"data file is empty: {path}")
        found = _columns_and_labels(path, job.data.label_column if job.task == "text-classification" else None,
                                    job.data.encoding)
        if found is None:
            continue
        cols, labels = found
        if not cols:
            raise loaded.error(field, f"cannot read {path.name} as {job.data.encoding} text with columns",
                               hint="set data.encoding (e.g. latin-1)")
        if job.data.text_column not in cols:
            raise loaded.error("data.text_column", f"'{job.data.text_column}' is not a column of {path.name} "
                                                   f"(columns: {', '.join(cols[:10])})")
        if job.task == "text-classification":
            if job.data.label_column not in cols:
                raise loaded.error("data.label_column", f"'{job.data.label_column}' is not a column of "
                                                        f"{path.name} (columns: {', '.join(cols[:10])})")
            if key == "train" and len(labels) < 2:
                raise loaded.error(field, f"{path.name} has a single class "
                                          f"({next(iter(labels), 'none')}); classification needs two or more")
