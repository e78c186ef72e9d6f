"""benchmarks/gpu.py run on the CPU at its --smoke sizes: every section's figures are there and
follow from the measured times by the stated formulas, the FLOPs per token count the model's own
parameters, a batch too large for the device is halved, a bad flag is one line, and the module
imports none of the wheels the GPU image lacks but ml-collections."""

import json
import math
import statistics
import subprocess
import sys

import jax
import pytest

from benchmarks import gpu, timing
from rare_tasks.lm import ladder
from rare_tasks.lm.model import Model, ModelSpec

H100_BF16_PEAK = 989e12


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  out = tmp_path_factory.mktemp("gpu") / "gpu.json"
  returned = gpu.main(["--smoke", f"--out={out}"])
  written = json.loads(out.read_text())
  assert written == json.loads(json.dumps(returned))
  return written


def _close(a: float, b: float) -> bool:
  return math.isclose(a, b, rel_tol=1e-9)


def _positive(x: float) -> bool:
  return math.isfinite(x) and x > 0


def test_the_json_records_where_it_ran_and_every_section(smoke):
  assert smoke["jax_version"] == jax.__version__
  assert smoke["device_kind"] == jax.devices()[0].device_kind
  assert smoke["settings"]["smoke"] and smoke["settings"]["presets"] == ["cpu_d32"]
  assert smoke["peak"]["flop_per_s"] == H100_BF16_PEAK and "H100" in smoke["peak"]["name"]
  assert "6 N_nonemb + 6 d V + 12 L d T" in smoke["flops_formula"]
  assert {"lm", "ensemble", "synthetic"} <= set(smoke)


def _independent_flops_per_token(preset: str, vocab: int, seq_len: int) -> int:
  """6 N_nonemb + 6 d V + 12 L d T, N_nonemb counted from the shapes of the parameters the model
  initialises (all of them but the input embedding and the LM head)."""
  shape = ladder.PRESETS[preset].shape
  params = jax.eval_shape(Model(ModelSpec(shape, vocab)).init, jax.random.key(0))
  total = sum(math.prod(a.shape) for a in jax.tree.leaves(params))
  heads = math.prod(params["embedding"].shape) + math.prod(params["lm_head"]["kernel"].shape)
  non_embedding = total - heads
  d = shape.d_model
  return 6 * non_embedding + 6 * d * vocab + 12 * shape.num_layers * d * seq_len


def test_tokens_per_s_and_mfu_follow_from_the_times(smoke):
  s = smoke["settings"]
  for preset, r in smoke["lm"].items():
    assert len(r["raw_s"]) == s["repeats"] and r["median_s"] == statistics.median(r["raw_s"])
    assert r["tokens_per_run"] == s["steps"] * r["batch"] * s["seq_len"]
    assert _positive(r["tokens_per_s"])
    assert _close(r["tokens_per_s"], r["tokens_per_run"] / r["median_s"])
    fpt = _independent_flops_per_token(preset, s["vocab"], s["seq_len"])
    assert r["flops_per_token"] == fpt
    assert r["parameters"]["initialised_total"] == r["parameters"]["total"]
    assert _close(r["mfu"], r["tokens_per_s"] * fpt / H100_BF16_PEAK)
    assert 0 < r["mfu"] < 1


def test_the_ensemble_ratio_is_the_ratio_of_the_two_throughputs(smoke):
  e, s = smoke["ensemble"], smoke["settings"]
  assert e["members"] == 8 and e["batch"] == s["ensemble_batch"]
  tokens = e["members"] * e["batch"] * s["seq_len"] * s["steps"]
  fpt = _independent_flops_per_token(e["preset"], s["vocab"], s["seq_len"])
  for name in ("ensemble", "one_after_another"):
    r = e[name]
    assert r["model_tokens_per_run"] == tokens and _positive(r["model_tokens_per_s"])
    assert _close(r["model_tokens_per_s"], tokens / statistics.median(r["raw_s"]))
    assert _close(r["mfu"], r["model_tokens_per_s"] * fpt / H100_BF16_PEAK)
  assert _close(e["ratio_ensemble_over_one_after_another"],
                e["ensemble"]["model_tokens_per_s"] / e["one_after_another"]["model_tokens_per_s"])


def test_the_synthetic_group_is_a_finite_fraction_of_the_matmul(smoke):
  r = smoke["synthetic"]
  config = timing.load_config("configs/width_by_frequency.py", "smoke")
  assert r["width"] == max(config.grid.width)
  assert r["cells"] == len(config.grid.frequency) * len(config.grid.seed)
  outputs = config.task.num_tasks * config.task.block_size
  per_member = 3 * (2 * r["batch_size"] * r["input_dim"] * r["width"]
                    + 2 * r["batch_size"] * r["width"] * outputs)
  assert r["flops_per_member_step"] == per_member
  assert _close(r["achieved_flop_per_s"], per_member * r["cells"] * r["steps"] / r["median_s"])
  n = r["matmul"]["shape"][0]
  assert r["matmul"]["precision"] == "highest" and r["matmul"]["dtype"] == "float32"
  assert _close(r["matmul"]["flop_per_s"], 2 * n**3 / statistics.median(r["matmul"]["raw_s"]))
  assert 0 < r["fraction_of_matmul"] < math.inf
  assert _close(r["fraction_of_matmul"], r["achieved_flop_per_s"] / r["matmul"]["flop_per_s"])


def test_smoke_sizes_yield_to_flags_and_the_gpu_sizes_are_the_defaults():
  a = gpu.arguments(["--smoke", "--steps=5", "--peak_tflops=495"])
  assert a.presets == ["cpu_d32"] and a.steps == 5 and a.peak_flops == 495e12
  assert a.out.name == "gpu_smoke.json"
  g = gpu.arguments([])
  assert g.presets == ["4M", "20M", "60M"] and g.seq_len == 2048 and g.dtype == "bfloat16"
  assert len(g.batch_sizes) == 3 and g.peak_flops == H100_BF16_PEAK and g.out.name == "gpu.json"


@pytest.mark.parametrize("flags", [["--presets=5M"], ["--batch_sizes=1,2"], ["--steps=0"],
                                   ["--batch_sizes=x"], ["--sections=lm,foo"]])
def test_a_bad_flag_is_one_line(flags, capsys):
  with pytest.raises(SystemExit) as exit_:
    gpu.arguments(["--smoke", *flags])
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("benchmarks.gpu: error: ") and err.count("\n") == 1, err


def test_a_batch_that_runs_out_of_memory_is_halved():
  tried = []

  def build(batch):
    tried.append(batch)
    if batch > 3:
      raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 1 GiB")
    return f"built at {batch}"

  assert gpu.fitted(build, 16) == ("built at 2", 2) and tried == [16, 8, 4, 2]

  def broken(batch):
    raise jax.errors.JaxRuntimeError("INTERNAL: something else")

  with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
    gpu.fitted(broken, 16)


def test_the_module_imports_none_of_the_wheels_the_gpu_image_lacks_but_ml_collections():
  lacking = ("grain", "tensorflow_datasets", "array_record", "tensorflow")
  code = ("import sys, benchmarks.gpu; "
          f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({lacking!r})))")
  out = subprocess.run([sys.executable, "-c", code], cwd=timing.REPO, capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == "[]"


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
  def broken(args):
    raise ValueError("no such kernel")

  monkeypatch.setattr(gpu, "synthetic_section", broken)
  monkeypatch.setattr(gpu, "lm_section", lambda args: {"ran": True})
  out = tmp_path / "gpu.json"
  with pytest.raises(SystemExit, match="failed: synthetic"):
    gpu.main(["--smoke", "--sections=synthetic,lm", f"--out={out}"])
  written = json.loads(out.read_text())
  assert "ValueError: no such kernel" in written["synthetic"]["error"]
  assert written["lm"] == {"ran": True}
