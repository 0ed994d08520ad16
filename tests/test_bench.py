"""bench/gpu.sh and bench/gpu_mfu.py on a machine without a GPU: the MFU arithmetic, the peak
table, the skip path, and the whole eager + compiled flow in its CPU smoke mode."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_gpu_mfu():
    spec = importlib.util.spec_from_file_location("gpu_mfu", ROOT / "bench" / "gpu_mfu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H200", 989.0), ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H100 NVL", 835.0), ("NVIDIA GH200 480GB", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A10G", 70.0), ("NVIDIA A10", 125.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0),
    ("NVIDIA H20", 148.0),
])
def test_peak_table_takes_the_most_specific_name(name, peak, monkeypatch):
    monkeypatch.delenv("PEAK_TFLOPS", raising=False)
    got, source = load_gpu_mfu().peak_tflops(name)
    assert got == peak and "datasheet" in source


def test_unknown_gpu_has_no_peak_unless_given(monkeypatch):
    m = load_gpu_mfu()
    monkeypatch.delenv("PEAK_TFLOPS", raising=False)
    got, why = m.peak_tflops("Some Future GPU")
    assert got is None and "PEAK_TFLOPS" in why
    monkeypatch.setenv("PEAK_TFLOPS", "500")
    assert m.peak_tflops("Some Future GPU")[0] == 500.0


def test_flops_per_token_matches_a_counted_training_step():
    """The MFU numerator (6N + 12·L·H·seq per token) against torch's own count of every matmul
    in one forward + backward of a small Llama (eager attention, so that its matmuls are counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig, LlamaForCausalLM

    m = load_gpu_mfu()
    seq, batch = 128, 2
    cfg = LlamaConfig(vocab_size=1000, max_position_embeddings=seq, tie_word_embeddings=False,
                      attn_implementation="eager", hidden_size=128, intermediate_size=352,
                      num_hidden_layers=3, num_attention_heads=4)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    n = sum(p.numel() for p in model.parameters())
    x = torch.randint(0, cfg.vocab_size, (batch, seq))
    counter = FlopCounterMode(display=False)
    with counter:
        model(input_ids=x, labels=x).loss.backward()
    counted = counter.get_total_flops() / (batch * seq)
    # torch counts attention as full (not causal) too, as the formula does (PaLM's convention);
    # they differ only by the norms' weights, which the formula counts as matmul parameters.
    assert m.flops_per_token(cfg, n, seq) == pytest.approx(counted, rel=0.005)


def test_gpu_sh_without_a_gpu_says_so_and_exits_0(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with the tools the script needs and no nvidia-smi
    bin_dir.mkdir()
    for tool in ("bash", "date", "dirname", "mktemp", "rm", "grep", "sed", "head", "tail", "timeout"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh")], capture_output=True, text=True,
                       env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"bench": "gpu", "skipped": "no nvidia-smi (no NVIDIA driver)"}


@pytest.mark.slow
def test_gpu_sh_whole_flow_in_smoke_mode():
    env = dict(os.environ, GPU_BENCH_SMOKE="1", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh")], capture_output=True, text=True,
                       env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert sum("examples/s" in line for line in lines) == 2, r.stdout  # eager, then the second run
    out = json.loads(lines[-1])
    assert set(out["runs"]) == {"eager", "compiled"}
    assert all(run["examples_per_s"] > 0 for run in out["runs"].values())
    assert out["model"] == "llama-smoke" and out["mfu"] is None and "target_met" not in out
    assert out["precision"] == "accelerate mixed_precision=no" and out["final_loss"] > 0


# How torch names each catalog GPU (torch.cuda.get_device_name), for the cross-check below.
TORCH_NAMES = {"L4": "NVIDIA L4", "A10G": "NVIDIA A10G", "A10": "NVIDIA A10",
               "A100-40GB": "NVIDIA A100-SXM4-40GB", "A100-80GB": "NVIDIA A100-SXM4-80GB",
               "H100": "NVIDIA H100 80GB HBM3", "H200": "NVIDIA H200", "L40S": "NVIDIA L40S",
               "RTX4090": "NVIDIA GeForce RTX 4090", "RTX3090": "NVIDIA GeForce RTX 3090",
               "RTX6000Ada": "NVIDIA RTX 6000 Ada Generation"}


def test_peak_table_agrees_with_the_catalog(monkeypatch):
    """bench/gpu_mfu.py keeps its own copy (the GPU machine it runs on has no pydantic to read
    providers.yaml with); both must give every bf16 GPU the same peak."""
    from launcher.catalog import load_catalog

    monkeypatch.delenv("PEAK_TFLOPS", raising=False)
    m = load_gpu_mfu()
    bf16 = {name: spec.bf16 for name, spec in load_catalog().gpus.items() if spec.bf16}
    assert set(bf16) == set(TORCH_NAMES), "name the new catalog GPU in TORCH_NAMES"
    for name, peak in bf16.items():
        assert m.peak_tflops(TORCH_NAMES[name])[0] == peak, name


def test_a_batch_that_does_not_fit_is_halved_until_it_does():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_mfu.py"), "--smoke", "--batch", "8",
                        "--fake-oom-above", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "batch 8 does not fit in memory; trying 4" in r.stdout and "trying 2" in r.stdout
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["batch"] == 2 and out["steps"] == 2 and out["examples_per_s"] > 0
