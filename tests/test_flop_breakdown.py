"""benchmarks/flop_breakdown.py: the components' FLOPs add up to the whole program's (tiny model, CPU)."""
import dataclasses
import json

import pytest

from benchmarks import flop_breakdown as fb

# The components leave out only a few scalar ops of ``stylize`` (the cast of the controls, the W = (1, 1)
# row of the identity transfer): measured |sum / whole − 1| ≤ 1e-6 for the tiny model at 32² and 64²
# (and 0 to the printed 0.1 GFLOP for the default model at 512² and 1024²). 1e-4 leaves room for
# version drift while still catching a component that is missing or counted twice (the smallest, the
# blend, is 0.2% of the tiny program at 64², measured 2026-11-29 on CPU).
REL = 1e-4


@pytest.fixture(scope="module")
def tiny():
  return fb.model_config("tiny", "float32", "xla")


@pytest.fixture(scope="module")
def result(tiny):
  return fb.breakdown(tiny, 64, 1)


def test_components_sum_to_the_whole_portrait_program(result):
  assert [c["component"] for c in result["components"]] == [
      "VGG-19 encode (content)", "VGG-19 encode (style)", "SANet attention c→s (relu4_1+relu5_1)",
      "SANet attention identity c→c", "weigh + merge conv", "decoder (2 regions)",
      "SegNet mask (decoder + feather)", "blend weight (edge inside the outline)", "blend"]
  assert result["sum_flops"] == pytest.approx(result["whole"]["flops"], rel=REL)
  assert sum(c["share"] for c in result["components"]) == pytest.approx(1.0, rel=REL)


def test_every_component_costs_flops_and_bytes(result):
  for c in result["components"]:
    assert c["flops"] > 0 and c["bytes_unfused"] > 0 and c["bytes_io"] > 0, c


def test_plain_program_costs_less_and_its_components_add_up(result):
  assert result["whole_plain"]["flops"] < result["whole"]["flops"]
  assert result["plain_sum_flops"] == pytest.approx(result["whole_plain"]["flops"], rel=REL)


def test_one_chunk_counts_every_attention_chunk(tiny, result):
  # Chunks of 8 queries: relu4_1 at 64² has 8×8 queries, so the attention runs as an 8-step lax.map,
  # whose body XLA's cost analysis counts once.
  r = fb.breakdown(dataclasses.replace(tiny, attention_chunk=8), 64, 1)
  assert r["whole_chunked"]["flops"] < r["whole"]["flops"]
  assert r["whole"]["flops"] == pytest.approx(result["whole"]["flops"], rel=REL)
  assert r["sum_flops"] == pytest.approx(r["whole"]["flops"], rel=REL)


def test_main_prints_the_table_and_writes_json(tmp_path, capsys):
  out = tmp_path / "flops.json"
  fb.main(["--model", "tiny", "--size", "32", "--out", str(out)])
  table = capsys.readouterr().out
  assert "| **whole portrait program** |" in table and "| SegNet mask (decoder + feather) |" in table
  data = json.loads(out.read_text())
  assert data["model"] == "tiny" and data["size"] == 32 and len(data["components"]) == 9
