import json

from edgediff.measure.report import markdown_table, write_json


def test_markdown_table_and_json(tmp_path):
    t = markdown_table(["a", "b"], [[1, "x"], [2.5, "y"]])
    assert t.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 2.5 | y |"]
    write_json(tmp_path / "r.json", [{"a": 1}])
    assert json.loads((tmp_path / "r.json").read_text()) == [{"a": 1}]
    write_json(None, [{"a": 1}])


HOST = {"cpu": "Test CPU", "cores": 2, "mhz": 2500.0, "simd": "avx512f", "os": "Linux", "python": "3.11",
        "torch": "2.13.0", "openvino": None}


def _row(backend, precision, device, p50, **kw):
    return {"backend": backend, "precision": precision, "device": device, "batch": 1, "threads": 2,
            "load_ms": 10.0, "step": {"p50": p50, "p90": p50 * 1.2}, "image_ms": p50 * 10,
            "sampler_overhead_frac": 0.01, "size_mb": 4.5, "peak_rss_mb": 300.0, "parity_db": 90.0,
            "gflops_per_s": 40.0, "speedup": 1.0, "fid_proxy": None, "fid_floor": None, "fid_n": None,
            "sampler": {"name": "dpmpp_2m", "steps": 10, "guidance": 1.0}} | kw


def test_jsonl_round_trip_and_append(tmp_path):
    from edgediff.measure.report import append_jsonl, read_jsonl, write_jsonl

    write_jsonl(tmp_path / "r.jsonl", [{"a": 1}, {"b": [2]}])
    append_jsonl(tmp_path / "new" / "r.jsonl", [{"a": 1}])
    append_jsonl(tmp_path / "new" / "r.jsonl", [{"c": None}])
    assert read_jsonl(tmp_path / "r.jsonl") == [{"a": 1}, {"b": [2]}]
    assert read_jsonl(tmp_path / "new" / "r.jsonl") == [{"a": 1}, {"c": None}]


def test_bench_table_shows_fid_only_when_measured_and_tolerates_phone_rows():
    from edgediff.measure.report import bench_markdown

    phone = _row("executorch", "int8", "android:Pixel 8", 3.0, image_ms=None, sampler_overhead_frac=None,
                 peak_rss_mb=None, threads=None, speedup=None, sampler={})
    md = bench_markdown([_row("eager", "fp32", "CPU", 6.0), phone], HOST, 320.0)
    assert "FID-proxy" not in md.splitlines()[0] and "| executorch | int8 | android:Pixel 8 | 1 | – |" in md
    assert "estimated fp32 peak 320 GFLOP/s" in md and "dpmpp_2m×10" in md
    md = bench_markdown([_row("eager", "fp32", "CPU", 6.0, fid_proxy=1.5, fid_floor=1.1, fid_n=500)], HOST, None)
    assert "| FID-proxy |" in md and "| 1.50 |" in md and "FID-proxy on 500 samples" in md


def test_plots_render_with_fid_rows_and_rows_without_image_latency(tmp_path):
    from edgediff.measure.report import latency_plot, pareto_plot

    rows = [_row("eager", "fp32", "CPU", 6.0, fid_proxy=1.3, fid_floor=1.0, fid_n=100),
            _row("openvino", "int8", "CPU", 2.0, fid_proxy=1.6, fid_floor=1.0, fid_n=100),
            _row("executorch", "fp32", "android:Pixel 8", 3.0, image_ms=None)]
    for plot in (latency_plot, pareto_plot):
        with open(tmp_path / f"{plot.__name__}.png", "wb") as f:
            plot(rows, f)
        assert (tmp_path / f"{plot.__name__}.png").read_bytes()[:4] == b"\x89PNG"
