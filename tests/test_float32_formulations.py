"""The float32 formulation benchmark's pure parts: the ISA cap reaches both libraries, and the shared
``onednn_kernels.alternated`` it times with reverses every other round."""
import pytest

from benchmarks import float32_formulations as bench
from benchmarks import onednn_kernels


def test_a_cap_sets_onednns_and_xlas_isa_and_native_sets_neither(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
  capped = bench.cap_environment("AVX2")
  assert capped["ONEDNN_MAX_CPU_ISA"] == "AVX2"
  assert capped["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 --xla_cpu_max_isa=AVX2"
  native = bench.cap_environment("native")
  assert "ONEDNN_MAX_CPU_ISA" not in native
  assert native["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
  with pytest.raises(KeyError):
    bench.cap_environment("AVX512_CORE_AMX")


def test_every_other_round_runs_the_calls_in_reverse_order():
  order = []
  noop = lambda: None
  times = onednn_kernels.alternated({"a": (noop, lambda: order.append("a")),
                                     "b": (noop, lambda: order.append("b"))}, 3)
  assert order == ["a", "b", "b", "a", "a", "b"]
  assert [len(t) for t in times.values()] == [3, 3]
