"""Runtime and cost estimates, offline and without torch.

Training FLOPs ~= 6 x N x padded training tokens x epochs, plus 2 x N x padded evaluation tokens
per evaluation, where N counts the parameters that do matrix work per token (all but the
embedding tables; the LM head counts for causal-lm) plus the attention-score term. Parameters
come from the model's config.json (or a GGUF file's tensor table), read without loading
weights; tokens from a sample of the real data tokenized with the model's tokenizer.json (the
`tokenizers` library), else from a chars-per-token ratio. Time = FLOPs / (peak x utilisation),
plus the provider kind's fixed overhead; the bill rounds up to the billing increment and minimum.

Local CPU runs use an effective FLOP/s per core calibrated on this machine with
bench/estimate_accuracy.py; `bench/estimate_accuracy.py --save` writes
$LAUNCHER_HOME/calibration.json, which overrides the shipped figures below.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# Shipped CPU calibration for this kind of 2-core machine. Measured 2026-11-29 in CPU seconds (so
# other processes' load does not count): MiniLM-L6 training steps (batch 16 x 34 tokens, AdamW)
# ran at 68.6 GFLOP/s on one thread; two threads are 1.7x one (offline-models-data.md), so
# 68.6 x 1.7 / 2 per core. Forward-only evaluation ran 1.35x the training rate.
CPU_GFLOPS_PER_CORE = 58.0          # effective training FLOP/s per core (fwd+bwd+optimizer)
CPU_EVAL_SPEEDUP = 1.35             # forward-only passes run at this x the training rate (no autograd)
LOCAL_OVERHEAD_S = 10.0             # Python start-ups with torch, tokenizing, model load, final writes:
                                    # 9.1 s fitted by bench/estimate_accuracy.py on an idle machine (2026-11-29)
CHARS_PER_TOKEN = 4.0               # fallback when no tokenizer.json can be read
SAMPLE_ROWS = 400                   # rows tokenized to measure tokens per example
MULTI_GPU_EFFICIENCY = 0.9          # data-parallel scaling per doubling of workers
GPU_STEP_LATENCY_S = (0.010, 0.003)  # per training step on a GPU: fixed + per layer (eager kernels,
                                     # optimizer); small models are launch-bound, not FLOP-bound


@dataclass
class ModelSize:
    total: int
    compute: int                     # parameters doing matmul work per token
    layers: int
    hidden: int
    method: str                      # how the figures were read


@dataclass
class DataSize:
    train_examples: int
    eval_examples: int
    tokens_per_example: float        # real tokens after truncation (+ special tokens)
    padding_factor: float            # padded / real with this batching
    method: str


@dataclass
class Workload:
    model: ModelSize
    data: DataSize
    epochs: int
    evals: int
    train_flops: float
    eval_flops: float
    train_steps: int = 0             # micro-batches per worker, all epochs
    eval_batches: int = 0            # evaluation batches per worker, all evaluations
    assumptions: list[str] = field(default_factory=list)


# ---- model size --------------------------------------------------------------------------------

def _model_dir(ref: str, base: Path) -> Optional[Path]:
    from launcher.train.model import resolve_ref
    try:
        p = Path(resolve_ref(ref, base))
    except Exception:  # noqa: BLE001 - a missing package: fall back to the name
        return None
    if p.exists():
        return p
    hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    snaps = sorted((hub / f"models--{ref.replace('/', '--')}" / "snapshots").glob("*/config.json"))
    return snaps[-1].parent if snaps else None


def _count_from_config(c: dict, causal: bool) -> ModelSize:
    h = int(c.get("hidden_size") or c.get("n_embd") or c.get("d_model") or 768)
    L = int(c.get("num_hidden_layers") or c.get("n_layer") or c.get("num_layers") or 12)
    heads = int(c.get("num_attention_heads") or c.get("n_head") or 12)
    kv = int(c.get("num_key_value_heads") or heads)
    inter = int(c.get("intermediate_size") or c.get("n_inner") or 4 * h)
    vocab = int(c.get("vocab_size") or 32000)
    pos = int(c.get("max_position_embeddings") or 0) if c.get("model_type") in ("bert", "roberta", "gpt2", "distilbert") else 0
    gated = c.get("model_type") in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "smollm3")
    head_dim = int(c.get("head_dim") or h // heads)
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2
    mlp = (3 if gated else 2) * h * inter
    per_layer = attn + mlp + 4 * h
    emb = vocab * h + pos * h + int(c.get("type_vocab_size") or 0) * h
    tied = c.get("tie_word_embeddings", True)
    head = vocab * h if causal else h * h + 2 * h   # LM head, or a pooler/classifier
    total = emb + L * per_layer + (0 if causal and tied else head)
    return ModelSize(total, L * per_layer + head, L, h, "config.json")


def read_gguf_tensors(path: Path) -> dict[str, int]:
    """Tensor name -> element count from a GGUF header (metadata skipped, weights never read)."""
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    with path.open("rb") as f:
        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def rstr():
            return f.read(rd("Q")).decode("utf-8", "replace")

        def skip(t):
            if t == 8:
                f.seek(rd("Q"), 1)
            elif t == 9:
                et, n = rd("I"), rd("Q")
                if et in sizes:
                    f.seek(sizes[et] * n, 1)
                else:
                    for _ in range(n):
                        skip(et)
            else:
                f.seek(sizes[t], 1)
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path.name} is not a GGUF file")
        rd("I")
        n_tensors, n_kv = rd("Q"), rd("Q")
        for _ in range(n_kv):
            rstr()
            skip(rd("I"))
        out = {}
        for _ in range(n_tensors):
            name = rstr()
            dims = [rd("Q") for _ in range(rd("I"))]
            rd("I"), rd("Q")
            out[name] = math.prod(dims)
        return out


def model_size(job, base: Path) -> ModelSize:
    m, causal = job.model, job.task == "causal-lm"
    d = _model_dir(m.name_or_path, base)
    if d is not None and m.gguf_file and (d / m.gguf_file).exists():
        t = read_gguf_tensors(d / m.gguf_file)
        emb = sum(n for k, n in t.items() if k.startswith("token_embd"))
        out_w = sum(n for k, n in t.items() if k.startswith("output."))
        layers = len({k.split(".")[1] for k in t if k.startswith("blk.")})
        total = sum(t.values())
        hidden = int(math.sqrt(max(t.get("blk.0.attn_q.weight", 0), 1)))
        compute = total - emb + (emb if causal and not out_w else 0)
        return ModelSize(total, compute, layers, hidden, f"GGUF header of {m.gguf_file}")
    cfg_path = d / "config.json" if d is not None and d.is_dir() else None
    if cfg_path and cfg_path.exists():
        c = json.loads(cfg_path.read_text())
        if m.init == "scratch" and m.scratch is not None:
            c.update({k: v for k, v in m.scratch.model_dump().items() if v is not None})
        return _count_from_config(c, causal)
    guess = _size_from_name(m.name_or_path)
    return ModelSize(guess, int(guess * 0.8), 12, 768,
                     f"guessed from the name (no config.json found offline): {guess / 1e6:.0f}M")


def _size_from_name(name: str) -> int:
    import re
    hit = re.search(r"(\d+(?:\.\d+)?)\s*([mMbB])(?![a-zA-Z])", name.split("/")[-1])
    if hit:
        return int(float(hit.group(1)) * (1e9 if hit.group(2).lower() == "b" else 1e6))
    return 110_000_000


# ---- data size ---------------------------------------------------------------------------------

def _read_texts(path: Path, column: str, encoding: str) -> tuple[list[str], int]:
    """(a sample of texts, the number of rows) without reading more than ~8 MB."""
    raw = path.read_bytes()[: 8 << 20] if path.stat().st_size > 8 << 20 else path.read_bytes()
    text = raw.decode(encoding, errors="replace")
    suf = path.suffix.lower()
    if suf == ".csv":
        rows = [r.get(column) or "" for r in csv.DictReader(io.StringIO(text))]
    elif suf in (".jsonl", ".json"):
        rows = []
        for line in text.splitlines():
            try:
                rows.append(str(json.loads(line).get(column) or ""))
            except (ValueError, AttributeError):
                continue
    else:
        rows = [line for line in text.splitlines() if line.strip()]
    n = len(rows)
    if len(raw) < path.stat().st_size and rows:
        n = int(n * path.stat().st_size / len(raw))
    step = max(1, len(rows) // SAMPLE_ROWS)
    return rows[::step][:SAMPLE_ROWS], n


def _tokenizer_file(job, base: Path) -> Optional[Path]:
    d = _model_dir(job.model.tokenizer or job.model.name_or_path, base)
    if d is not None and (d / "tokenizer.json").exists():
        return d / "tokenizer.json"
    return None


def _padding(lengths: list[int], batch: int, grouped: bool) -> float:
    if not lengths:
        return 1.0
    ls = sorted(lengths, reverse=True) if grouped else list(lengths)
    padded = sum(max(ls[i:i + batch]) * len(ls[i:i + batch]) for i in range(0, len(ls), batch))
    return padded / max(sum(ls), 1)


def data_size(loaded) -> DataSize:
    from launcher.jobfile import local_data_files
    job, base = loaded.job, loaded.path.parent
    d = job.data
    files = local_data_files(loaded)
    if d.prepare and "train" in files and not files["train"].exists():
        from launcher.recipes import ensure_prepared
        ensure_prepared(d.prepare, files["train"], files.get("validation"))
    texts, n_train, n_val, method = [], None, None, ""
    if "train" in files and files["train"].exists():
        texts, n_train = _read_texts(files["train"], d.text_column, d.encoding)
    if "validation" in files and files["validation"].exists():
        n_val = _read_texts(files["validation"], d.text_column, d.encoding)[1]
    if n_train is None:
        n_train, method = d.max_train_samples or 10_000, "hub dataset: size unknown offline, 10,000 examples assumed; "
    if n_val is None and not d.validation:
        n_val = int(n_train * d.validation_split)
        n_train -= n_val
    n_val = n_val if n_val is not None else 1_000
    n_train = min(n_train, d.max_train_samples or n_train)
    n_val = min(n_val, d.max_eval_samples or n_val)
    causal = job.task == "causal-lm"
    tok = _tokenizer_file(job, base)
    key = _cache_key(files, tok, d.text_column, d.encoding, d.max_length, job.training.batch_size,
                     job.training.group_by_length, causal)
    hit = _token_cache().get(key)
    if hit:
        return DataSize(n_train, n_val, hit["tokens"], hit["padding"], method + hit["method"] + " (cached)")
    try:
        from tokenizers import Tokenizer
    except ImportError:          # a CLI-only install: no tokenizers library
        tok = None
    if texts and tok is not None:
        t = Tokenizer.from_file(str(tok))
        t.no_padding()
        t.enable_truncation(d.max_length)
        lengths = [min(len(e.ids) + (1 if causal else 0), d.max_length) for e in t.encode_batch(texts)]
        method += f"{len(texts)} rows tokenized with {tok.parent.name}/tokenizer.json"
    else:
        lengths = [min(max(1, round(len(s) / CHARS_PER_TOKEN) + 2), d.max_length) for s in texts] or [d.max_length // 2]
        method += f"{len(texts)} rows at {CHARS_PER_TOKEN} characters per token (no tokenizer.json readable offline)"
    pad = _padding(lengths, job.training.batch_size, job.training.group_by_length)
    mean = sum(lengths) / len(lengths)
    if key and texts:
        _token_cache(key, {"tokens": mean, "padding": pad, "method": method.split("; ")[-1]})
    return DataSize(n_train, n_val, mean, pad, method)


def _cache_key(files: dict, tok: Optional[Path], *parts) -> Optional[str]:
    try:
        stats = [f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files.values() if p.exists()]
        if tok is not None:
            stats.append(f"{tok}:{tok.stat().st_mtime_ns}")
    except OSError:
        return None
    return "|".join(stats + [str(x) for x in parts]) if stats else None


def _token_cache(key: Optional[str] = None, value: Optional[dict] = None) -> dict:
    """Token measurements by data file + tokenizer + settings, in $LAUNCHER_HOME/cache (saves
    importing `tokenizers` on every compare)."""
    path = Path(os.environ.get("LAUNCHER_HOME", Path.home() / ".launcher")) / "cache" / "tokens.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    if key is not None and value is not None:
        data = {k: v for k, v in list(data.items())[-50:]}
        data[key] = value
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)
        except OSError:
            pass
    return data


# ---- FLOPs ---------------------------------------------------------------------------------------

def workload(loaded) -> Workload:
    job = loaded.job
    ms, ds = model_size(job, loaded.path.parent), data_size(loaded)
    t = job.training
    seq = ds.tokens_per_example * ds.padding_factor
    per_token = ms.compute + ms.layers * seq * ms.hidden       # forward multiply-adds per token
    workers = job.compute.gpus * job.compute.nodes
    steps_per_epoch = math.ceil(ds.train_examples / (t.batch_size * workers))
    total_steps = steps_per_epoch * t.epochs
    opt_steps = math.ceil(total_steps / t.gradient_accumulation_steps)
    evals = t.epochs if t.eval_every == "epoch" else max(1, opt_steps // t.eval_every)
    eval_batches = math.ceil(ds.eval_examples / (2 * t.batch_size * workers)) * evals
    train_tok = ds.train_examples * seq * t.epochs
    eval_tok = ds.eval_examples * seq * evals
    a = [f"parameters: {ms.total / 1e6:.1f}M total, {ms.compute / 1e6:.1f}M doing matmul work per token "
         f"({ms.layers} layers, hidden {ms.hidden}; {ms.method})",
         f"data: {ds.train_examples} train / {ds.eval_examples} eval examples, {ds.tokens_per_example:.1f} "
         f"tokens each, padding x{ds.padding_factor:.2f} (batch {t.batch_size}, "
         f"{'grouped by length' if t.group_by_length else 'random order'}); {ds.method}",
         f"FLOPs: 6 x N x {train_tok / 1e6:.2f}M train tokens ({t.epochs} epochs) + 2 x N x "
         f"{eval_tok / 1e6:.2f}M eval tokens ({evals} evaluations), N incl. attention "
         f"{per_token / 1e6:.1f}M = {(6 * per_token * train_tok + 2 * per_token * eval_tok) / 1e12:.3f} TFLOP"]
    return Workload(ms, ds, t.epochs, evals, 6 * per_token * train_tok, 2 * per_token * eval_tok,
                    total_steps, eval_batches, a)


# ---- time ----------------------------------------------------------------------------------------

def calibration() -> dict:
    """This machine's CPU calibration: $LAUNCHER_HOME/calibration.json, else the shipped figures."""
    home = Path(os.environ.get("LAUNCHER_HOME", Path.home() / ".launcher"))
    cal = {"cpu_gflops_per_core": CPU_GFLOPS_PER_CORE, "eval_speedup": CPU_EVAL_SPEEDUP,
           "overhead_s": LOCAL_OVERHEAD_S, "source": "shipped (CPU-time measurement, 2-core machine)"}
    try:
        saved = json.loads((home / "calibration.json").read_text())
        cal.update({k: saved[k] for k in ("cpu_gflops_per_core", "eval_speedup", "overhead_s") if k in saved})
        cal["source"] = f"{home / 'calibration.json'} (measured {saved.get('measured_at', '?')})"
    except (OSError, ValueError, KeyError):
        pass
    return cal


def utilisation(compute_params: int) -> float:
    """Achievable fraction of peak: small models keep a GPU busy poorly."""
    return round(min(0.45, max(0.08, 0.40 * (compute_params / 1e9) ** 0.25)), 3)


def gpu_seconds(w: Workload, spec, gpus: int, nodes: int, mixed_precision: str) -> tuple[float, str]:
    if mixed_precision == "no":
        peak, prec = spec.fp32, "fp32"
    elif mixed_precision == "bf16" or (mixed_precision == "auto" and spec.bf16):
        peak, prec = spec.bf16 or spec.fp16 or spec.fp32, "bf16"
    else:
        peak, prec = spec.fp16 or spec.fp32, "fp16"
    u = utilisation(w.model.compute)
    workers = gpus * nodes
    scale = workers * MULTI_GPU_EFFICIENCY ** math.log2(workers) if workers > 1 else 1.0
    rate = peak * 1e12 * u * scale
    lat = GPU_STEP_LATENCY_S[0] + GPU_STEP_LATENCY_S[1] * w.model.layers
    s = (w.train_flops + w.eval_flops) / rate + lat * (w.train_steps + w.eval_batches / 3)
    return s, (f"{peak:g} TFLOP/s {prec} peak x {u:.0%} utilisation x {scale:.2f} ({workers} GPU) "
               f"+ {lat * 1000:.0f} ms per step x {w.train_steps} steps (+ eval batches at a third)")


def cpu_seconds(w: Workload, cores: Optional[int] = None) -> tuple[float, str]:
    cal = calibration()
    cores = cores or os.cpu_count() or 1
    rate = cal["cpu_gflops_per_core"] * 1e9 * cores
    s = w.train_flops / rate + w.eval_flops / (rate * cal["eval_speedup"]) + cal["overhead_s"]
    return s, (f"CPU: {cal['cpu_gflops_per_core']:g} GFLOP/s per core x {cores} cores (training), "
               f"x{cal['eval_speedup']:g} for evaluation, + {cal['overhead_s']:g} s start-up; {cal['source']}")


def billed(seconds: float, granularity_s: int, minimum_s: int) -> float:
    """Seconds charged: rounded up to the increment, at least the minimum."""
    return max(float(minimum_s), math.ceil(max(seconds, 0.0) / granularity_s) * granularity_s)


def job_cost(seconds: float, price_per_hour: Optional[float], billing, nodes: int = 1) -> Optional[float]:
    if price_per_hour is None:
        return None
    return round(billed(seconds, billing.granularity_s, billing.minimum_s) / 3600 * price_per_hour * nodes, 4)


def quota_warnings(hours: float, provider, display: str) -> list[str]:
    out = []
    for q in provider.quotas:
        if hours > q.hours:
            what = "session" if q.kind == "session" else "weekly quota"
            out.append(f"{hours:.1f} h is longer than a {display} {what} ({q.hours:g} h): "
                       + ("it must resume across sessions from checkpoints" if q.kind == "session"
                          else "it needs more than one week of quota"))
    return out
