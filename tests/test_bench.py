import json

import pytest

from edgediff import bench
from edgediff import report as report_mod
from edgediff.converters import convert_model
from tests.test_cli import assert_one_line_error, run

PNG = b"\x89PNG\r\n\x1a\n"
FIELDS = {"backend", "precision", "device", "path", "batch", "threads", "load_ms", "first_ms", "step", "image_ms",
          "sampler_overhead_ms", "sampler_overhead_frac", "calls_per_image", "size_mb", "parity_db",
          "gflops_per_step", "gflops_per_s", "host", "speedup"}


@pytest.fixture
def report(small_model_dir, tmp_path):
    pytest.importorskip("openvino")
    ov = convert_model(small_model_dir, "openvino", tmp_path / "ov").path
    out = tmp_path / "report"
    records = bench.run([small_model_dir, ov], out_dir=out, warmup=1, iters=5, progress=False)
    return out, records


def test_bench_writes_the_four_files_with_full_rows(report):
    out, records = report
    assert sorted(p.name for p in out.iterdir()) == ["latency.png", "pareto.png", "report.json", "report.md"]
    rows = json.loads((out / "report.json").read_text())
    assert [r["backend"] for r in rows] == ["eager", "openvino"] == [r.backend for r in records]
    for r in rows:
        assert FIELDS <= set(r), FIELDS - set(r)
        assert r["step"]["p50"] <= r["step"]["p90"] and r["step"]["n"] == 5
        assert r["gflops_per_step"] > 0 and r["size_mb"] > 0
        assert r["calls_per_image"] == 4 * 2  # 4 steps, guidance 2.0: conditional + unconditional call per step
    assert rows[0]["speedup"] == 1.0 and rows[0]["parity_db"] is None and rows[1]["parity_db"] > 40
    for name in ("latency.png", "pareto.png"):
        assert (out / name).read_bytes()[:8] == PNG
    md = (out / "report.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == 3
    assert "ms/step p50" in md and "Host:" in md and "GFLOP/s" in md


def test_compare_with_the_same_report_gives_a_change_per_row(report, tmp_path):
    out, _ = report
    res = run("bench", str(out.parent / "model"), str(out.parent / "ov"), "--warmup", "0", "--iters", "2",
              "--out", str(tmp_path / "again"), "--compare", str(out / "report.json"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "| eager | fp32 |" in res.stdout and "Change of ms/step p50" in res.stdout
    rows = json.loads((out / "report.json").read_text())
    diff = report_mod.changes(rows, rows)
    assert len(diff) == 2 and all(d["change_pct"] == 0.0 for d in diff)
    assert res.stdout.count("%)") == 2 and "(–%)" not in res.stdout


def test_unknown_target_is_a_one_line_error(tmp_path):
    res = run("bench", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    assert_one_line_error(res, "not found")
    assert not (tmp_path / "r").exists()


def test_peak_estimate_from_cpu_facts():
    assert bench.peak_gflops({"cores": 2, "mhz": 2500.0, "simd": "avx512f"}) == 2 * 2.5 * 64
    assert bench.peak_gflops({"cores": 2, "mhz": None, "simd": "avx512f"}) is None
