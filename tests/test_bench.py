import json
import subprocess
import sys

import numpy as np
import pytest

from edgediff.converters.convert import convert_model
from edgediff.errors import EdgediffError, InputError
from edgediff.format.precond import Preconditioning
from edgediff.measure import bench
from edgediff.measure import report as report_mod
from edgediff.measure.bench_worker import measure_in_child
from edgediff.models import checkpoint
from tests.conftest import SMALL, random_unet
from tests.test_cli import assert_one_line_error, run

PNG = b"\x89PNG\r\n\x1a\n"
FILES = ["latency.png", "pareto.png", "report.json", "report.jsonl", "report.md"]
FIELDS = {"backend", "precision", "device", "model", "path", "batch", "threads", "threads_requested", "cpu_util",
          "load_ms", "first_ms", "step", "image_ms", "sampler_overhead_ms", "sampler_overhead_frac",
          "calls_per_image", "size_mb", "peak_rss_mb", "parity_db", "fid_proxy", "fid_floor", "fid_n",
          "gflops_per_step", "gflops_per_s", "host", "isolated", "speedup"}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """A small random model dir and its OpenVINO artifact, shared by this module's tests."""
    pytest.importorskip("openvino")
    root = tmp_path_factory.mktemp("bench")
    net = random_unet(SMALL)
    meta = {"name": "small-test", "precond": Preconditioning().to_dict(),
            "sampler_defaults": {"sampler": "dpmpp_2m", "steps": 4, "guidance": 2.0}}
    model = checkpoint.save(root / "model", net, meta)
    return root, model, convert_model(model, "openvino", root / "ov").path


@pytest.fixture(scope="module")
def report(dirs):
    root, model, ov = dirs
    records = bench.run([model, ov], out_dir=root / "report", threads=1, warmup=1, iters=5, progress=False,
                        isolate=False)
    return root / "report", records


def test_bench_writes_the_five_files_with_full_rows(report):
    out, records = report
    assert sorted(p.name for p in out.iterdir()) == FILES
    rows = json.loads((out / "report.json").read_text())
    assert rows == report_mod.read_jsonl(out / "report.jsonl")
    assert [r["backend"] for r in rows] == ["eager", "openvino"] == [r.backend for r in records]
    for r in rows:
        assert FIELDS <= set(r), FIELDS - set(r)
        assert r["step"]["p50"] <= r["step"]["p90"] and r["step"]["n"] == 5
        assert r["gflops_per_step"] > 0 and r["size_mb"] > 0 and r["model"] == "small-test"
        assert r["calls_per_image"] == 4 * 2  # 4 steps, guidance 2.0: conditional + unconditional call per step
        assert r["threads"] == r["threads_requested"] == 1 and 0 < r["cpu_util"] < 3
        assert r["peak_rss_mb"] is None and not r["isolated"] and r["fid_proxy"] is None
    assert rows[0]["speedup"] == 1.0 and rows[0]["parity_db"] is None and rows[1]["parity_db"] > 40
    for name in ("latency.png", "pareto.png"):
        assert (out / name).read_bytes()[:8] == PNG
    md = (out / "report.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == 3
    assert "ms/step p50" in md and "Host:" in md and "GFLOP/s" in md and "FID-proxy" not in md


def test_cli_measures_each_target_in_a_subprocess_and_compares(report, dirs, tmp_path):
    out, _ = report
    root, model, ov = dirs
    res = run("bench", str(model), str(ov), "--warmup", "0", "--iters", "2", "--out", str(tmp_path / "again"),
              "--compare", str(out / "report.json"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "| eager | fp32 |" in res.stdout and "Change of ms/step p50" in res.stdout
    assert res.stdout.count("%)") == 2 and "(–%)" not in res.stdout
    rows = json.loads((tmp_path / "again" / "report.json").read_text())
    assert all(r["isolated"] and 50 < r["peak_rss_mb"] < 5000 for r in rows)
    diff = report_mod.changes(rows, rows)
    assert len(diff) == 2 and all(d["change_pct"] == 0.0 for d in diff)


def test_fid_proxy_fills_the_column(dirs, tmp_path):
    _, model, _ = dirs
    (rec,) = bench.run([model], out_dir=tmp_path, warmup=0, iters=1, progress=False, fid=12, isolate=False)
    assert rec.fid_n == 12 and rec.fid_proxy > rec.fid_floor > 0  # a random model is far from the data
    md = (tmp_path / "report.md").read_text()
    assert "| FID-proxy |" in md and "FID-proxy on 12 samples" in md
    with pytest.raises(InputError, match="at least 2 samples"):
        bench.run([model], out_dir=tmp_path / "x", fid=1, progress=False)


def test_a_failing_child_is_one_error_naming_the_target(tmp_path):
    with pytest.raises(EdgediffError, match=r"bench of .*nope failed in its subprocess \(exit 2\): .*not found"):
        measure_in_child(tmp_path / "nope", warmup=0, iters=1)


def test_unknown_target_is_a_one_line_error(tmp_path):
    res = run("bench", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    assert_one_line_error(res, "not found")
    assert not (tmp_path / "r").exists()


def test_device_applies_to_backends_that_take_one(tmp_path):
    """A device goes to the backends that choose among several (OpenVINO devices, Core ML compute units)."""
    from edgediff.converters import base

    assert [n for n in base.names() if base.get(n).takes_device] == ["openvino", "coreml"]
    with pytest.raises(InputError, match="applies to openvino and coreml only"):
        base.get("eager").load("default", device="GPU")


def test_any_precision_gets_its_own_row_and_speedup(report):
    _, records = report
    int8 = bench.Record.from_dict({**records[1].to_dict(), "precision": "int8", "step": {"p50": 0.5, "p90": 0.6}})
    table = bench.rows([records[0], int8])
    assert table[1]["precision"] == "int8" and np.isclose(table[1]["speedup"], records[0].step["p50"] / 0.5)
    assert "| openvino | int8 | CPU |" in report_mod.bench_markdown(table, records[0].host, None)


def test_peak_estimate_from_cpu_facts():
    assert bench.peak_gflops({"cores": 2, "mhz": 2500.0, "simd": "avx512f"}) == 2 * 2.5 * 64
    assert bench.peak_gflops({"cores": 2, "mhz": None, "simd": "avx512f"}) is None


def _row(model: str, backend: str, steps: int, step_ms: float, image_ms: float, batch: int = 1) -> bench.Record:
    return bench.Record(backend=backend, precision="fp32", device="CPU", model=model, path=model, batch=batch,
                        step={"p50": step_ms, "p90": step_ms * 1.1, "mean": step_ms, "n": 5}, image_ms=image_ms,
                        sampler_overhead_ms=0.1, sampler_overhead_frac=0.01, load_ms=1.0, size_mb=1.0,
                        sampler={"name": "dpmpp_2m" if steps > 2 else "consistency", "steps": steps, "guidance": 1.0},
                        host={})


def test_speed_up_per_image_beside_per_step_and_rows_named_by_model():
    """A 10-step teacher at 10 ms/step vs its 2-step student at 5 ms/step: 2× per step, 10× per image (the old
    single column compared ms/step across models and called a slower-per-image model faster)."""
    teacher = _row("teacher", "eager", 10, 10.0, 100.0)
    student_eager = _row("student", "eager", 2, 5.0, 10.0)
    student_ov = _row("student", "openvino", 2, 2.5, 5.0)
    table = bench.rows([teacher, student_eager, student_ov])
    assert [r["speedup"] for r in table] == [1.0, 1.0, 2.0]  # per step: against the same model's eager row
    assert [r["image_speedup"] for r in table] == [1.0, 10.0, 20.0]  # per image: against the baseline
    md = report_mod.bench_markdown(table, {"cpu": "x", "cores": 2, "os": "linux", "python": "3.11"}, None)
    assert "| student | openvino | fp32 | CPU | 1 |" in md and "20.00×" in md and "speed-up/image" in md
    assert "against teacher eager fp32" in md
    assert report_mod._label(table[2]).startswith("student\n")


def test_plots_name_each_model_and_its_own_steps(tmp_path):
    table = bench.rows([_row("teacher", "eager", 10, 10.0, 100.0), _row("student", "openvino", 2, 2.5, 5.0)])
    ax = report_mod.latency_plot(table, tmp_path / "l.png").axes[0]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["teacher", "student"]
    ax = report_mod.pareto_plot(table, tmp_path / "p.png").axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "dpmpp_2m×10" in legend[0] and "consistency×2" in legend[1] and legend[1].startswith("student")
    assert "10 steps" not in ax.get_xlabel() and "each model" in ax.get_xlabel()


def test_peak_rss_is_the_measuring_process_own_not_its_parents():
    """ru_maxrss survives fork+exec on Linux, so every bench row used to show the parent's size."""
    code = ("import subprocess, sys\n"
            "big = bytearray(600 << 20)\n"
            "for i in range(0, len(big), 4096): big[i] = 1\n"
            "child = 'from edgediff.measure.latency import peak_rss_mb; print(peak_rss_mb())'\n"
            "print(float(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True).stdout))\n")
    child_mb = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout)
    assert child_mb < 400, child_mb


def test_a_target_that_cannot_run_here_is_a_skipped_row_and_the_report_is_written(dirs, tmp_path):
    pytest.importorskip("coremltools")
    if sys.platform == "darwin":
        pytest.skip("on macOS Core ML artifacts run and are measured")
    root, model, ov = dirs
    cm = convert_model(model, "coreml", root / "cm", precision="fp16").path
    records = bench.run([ov, cm], out_dir=tmp_path / "r", threads=1, warmup=1, iters=3, progress=False,
                        isolate=True)
    assert [(r.backend, r.skipped) for r in records] == [("openvino", None), ("coreml", "needs macOS")]
    assert records[1].step is None and records[1].size_mb > 0 and records[0].peak_rss_mb > 0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == FILES
    assert "skipped: needs macOS" in (tmp_path / "r" / "report.md").read_text()
