"""bf16 is used only where the hardware runs it natively; elsewhere one line says so and fp32 runs."""

import pytest

from rkl_bench.algos import precision


def test_bf16_without_native_support_runs_fp32_and_says_why(monkeypatch):
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"cpu_name": "Some CPU", "avx2": True})
    said = []
    assert precision.effective_precision("bf16", "cpu", said.append) == "fp32"
    assert said == ["precision bf16: Some CPU has no native bf16 (AVX512-BF16 or AMX); running fp32"]
    assert precision.effective_precision("fp32", "cpu", said.append) == "fp32" and len(said) == 1


@pytest.mark.parametrize("caps, feature", [({"avx512_bf16": True}, "AVX512-BF16"), ({"amx_bf16": True}, "AMX-BF16")])
def test_bf16_with_native_support_is_kept(monkeypatch, caps, feature):
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: caps)
    said = []
    assert precision.native_bf16("cpu") == feature
    assert precision.effective_precision("bf16", "cpu", said.append) == "bf16" and said == []


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, got 'fp16'"):
        precision.effective_precision("fp16")


def test_the_speed_header_names_the_cpu_and_both_gemm_rates(monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import gemm

    monkeypatch.setattr(gemm, "gemm_gflops", lambda n, dtype, seconds=0.3: 100.0 if "float32" in str(dtype) else 50.0)
    lines = gemm.gemm_lines((256,))
    assert lines[0].startswith("CPU: ") and "bf16 " in lines[0]
    assert lines[1] == "GEMM 256x256, one thread: fp32 100 GFLOP/s, bf16 50 GFLOP/s (bf16/fp32 0.50x)"
