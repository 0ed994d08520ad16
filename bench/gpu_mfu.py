"""bf16 fine-tune throughput and MFU on one NVIDIA GPU (run by bench/gpu.sh).

    python bench/gpu_mfu.py [--budget-s 240] [--size auto|350m|1b] [--seq 2048] [--compile]
    python bench/gpu_mfu.py --smoke      # tiny model on CPU: checks the script itself, no MFU claim

A Llama-style model built from a config with random weights (no hub here; MFU does not depend on
the weights), trained on synthetic tokens with the training program's own step
(launcher/train/main.py): accelerate's mixed_precision="bf16" (autocast over fp32 master weights),
AdamW (fused) over the program's parameter groups, accelerator.backward, clip_grad_norm_ 1.0, and
no host read of the loss inside the loop. SDPA attention.
MFU = achieved model FLOP/s / the GPU's dense bf16 peak, with model FLOPs per token
6 * N (N = parameters without the input embedding) + 12 * layers * hidden * seq (attention),
the PaLM appendix-B accounting; no credit for recomputation.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from NVIDIA's product datasheets (as of 2026-11).
# Matched by substring of torch.cuda.get_device_name(), most specific first. PEAK_TFLOPS overrides.
PEAK_BF16_TFLOPS = [
    ("GB200", 2500.0), ("B200", 2250.0), ("B100", 1750.0), ("GH200", 989.0), ("H200", 989.0),
    ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("H800", 989.0), ("H20", 148.0),
    ("A100", 312.0), ("A800", 312.0), ("A40", 149.7), ("A30", 165.0), ("A10G", 70.0), ("A10", 125.0),
    ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("RTX 6000 Ada", 364.0), ("RTX A6000", 154.8),
    ("RTX 5090", 209.5), ("RTX 4090", 165.2), ("RTX 3090", 71.0),
]
SOURCE = "NVIDIA datasheets, dense bf16 tensor TFLOP/s (no sparsity), as_of 2026-11, verified: false"

SIZES = {  # Llama-style, head dim 128, vocab 32000, untied embeddings
    "350m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=8),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16),
    "smoke": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
}


def peak_tflops(name: str) -> tuple[float | None, str]:
    if os.environ.get("PEAK_TFLOPS"):
        return float(os.environ["PEAK_TFLOPS"]), "PEAK_TFLOPS environment variable"
    for key, val in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return val, SOURCE
    return None, f"unknown GPU '{name}': set PEAK_TFLOPS to its dense bf16 peak"


def flops_per_token(cfg, n_params: int, seq: int) -> float:
    n = n_params - cfg.vocab_size * cfg.hidden_size  # the input embedding is a lookup, not a matmul
    return 6.0 * n + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-s", type=float, default=240, help="stop measuring after this long")
    ap.add_argument("--size", default="auto", choices=["auto", *SIZES])
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=0, help="micro-batch (default: by size and memory)")
    ap.add_argument("--steps", type=int, default=20, help="measured steps (after 3 warm-up steps)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (adds compile time)")
    ap.add_argument("--smoke", action="store_true", help="tiny model on CPU: check the script only")
    ap.add_argument("--fake-oom-above", type=int, default=0, help=argparse.SUPPRESS)  # tests: OOM above this batch
    a = ap.parse_args()
    t_start = time.perf_counter()

    import torch
    from accelerate import Accelerator
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from launcher.train.model import param_groups  # the program's groups: no decay on norms/biases

    def result(**kw) -> int:
        print(json.dumps({"bench": "gpu", "date": time.strftime("%Y-%m-%d"), **kw}), flush=True)
        return 0

    if a.smoke:
        dev, name, mem_gb = torch.device("cpu"), "cpu (smoke)", 0.0
        size, seq, batch, steps = "smoke", 64, a.batch or 2, 2
    else:
        if not torch.cuda.is_available():
            print("gpu bench: no CUDA GPU visible to torch; nothing to measure", flush=True)
            return result(skipped="no CUDA GPU")
        if not torch.cuda.is_bf16_supported():
            print(f"gpu bench: {torch.cuda.get_device_name(0)} has no bf16 support; nothing to measure", flush=True)
            return result(skipped="no bf16", gpu=torch.cuda.get_device_name(0))
        dev = torch.device("cuda", 0)
        name = torch.cuda.get_device_name(0)
        mem_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
        size = a.size if a.size != "auto" else ("1b" if mem_gb >= 60 else "350m")
        seq, steps = a.seq, a.steps
        batch = a.batch or {"1b": 8 if mem_gb >= 120 else 4,
                            "350m": 8 if mem_gb >= 40 else (4 if mem_gb >= 20 else 2)}[size]
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, max_position_embeddings=max(seq, 128), tie_word_embeddings=False,
                      attn_implementation="sdpa", **SIZES[size])
    with torch.device(dev):  # initialise on the GPU: a 1B model's CPU init alone takes ~20 s
        model = LlamaForCausalLM(cfg)
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4, fused=True)
    # As the program sets it up: bf16 on a GPU, full precision on CPU (the smoke run).
    accelerator = Accelerator(mixed_precision="bf16" if dev.type == "cuda" else "no", cpu=dev.type != "cuda")
    model, opt = accelerator.prepare(model, opt)
    compiled = a.compile and not a.smoke
    fwd = torch.compile(model) if compiled else model
    oom_error = torch.cuda.OutOfMemoryError

    def make_data(b: int):
        x = torch.randint(0, cfg.vocab_size, (8, b, seq), generator=torch.Generator().manual_seed(0)).to(dev)
        return x, torch.ones_like(x[0])

    data, mask = make_data(batch)

    def step(i: int) -> torch.Tensor:
        x = data[i % data.shape[0]]
        if a.fake_oom_above and x.shape[0] > a.fake_oom_above:
            raise oom_error("fake out-of-memory (--fake-oom-above)")
        loss = fwd(input_ids=x, attention_mask=mask, labels=x).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    while True:  # warm-up (allocator, kernels, compile); a batch that does not fit is halved
        try:
            for i in range(3):
                step(i)
            sync()
            break
        except oom_error:
            if batch == 1:
                raise
            opt.zero_grad(set_to_none=True)
            data = mask = None
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            print(f"gpu bench: batch {batch} does not fit in memory; trying {batch // 2}", flush=True)
            batch //= 2
            data, mask = make_data(batch)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    done = 0
    loss = None
    for i in range(steps):
        loss = step(i)
        done += 1
        if i % 5 == 4:
            sync()
            if time.perf_counter() - t_start > a.budget_s:
                break
    sync()
    dt = time.perf_counter() - t0
    tokens = done * batch * seq
    fpt = flops_per_token(cfg, n_params, seq)
    achieved = tokens * fpt / dt
    peak, peak_src = peak_tflops(name) if not a.smoke else (None, "smoke run: no MFU")
    mfu = achieved / (peak * 1e12) if peak else None
    mem = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    print(f"gpu bench: {name} ({mem_gb:.0f} GiB), Llama-style {n_params / 1e6:.0f}M params, seq {seq}, "
          f"batch {batch}, {accelerator.mixed_precision} mixed precision{', compiled' if compiled else ''}: {done * batch / dt:.2f} examples/s, "
          f"{tokens / dt:,.0f} tokens/s, {achieved / 1e12:.1f} TFLOP/s"
          + (f", MFU {mfu:.1%} of {peak:.0f}" if mfu is not None else f" ({peak_src})")
          + (f", peak memory {mem:.1f} GiB" if mem is not None else ""), flush=True)
    return result(gpu=name, gpu_memory_gib=round(mem_gb, 1), model=f"llama-{size}", parameters=n_params,
                  seq=seq, batch=batch, steps=done, compiled=compiled, precision=f"accelerate mixed_precision={accelerator.mixed_precision}",
                  examples_per_s=round(done * batch / dt, 3), tokens_per_s=round(tokens / dt, 1),
                  achieved_tflops=round(achieved / 1e12, 2), peak_tflops=peak, peak_source=peak_src,
                  mfu=round(mfu, 4) if mfu is not None else None,
                  peak_memory_gib=round(mem, 2) if mem is not None else None,
                  final_loss=round(float(loss), 4) if loss is not None else None,
                  torch=torch.__version__, wall_s=round(time.perf_counter() - t_start, 1))


if __name__ == "__main__":
    sys.exit(main())
