"""A backend added from outside the package goes everywhere the built-in ones go, with no edgediff file changed:
registered at run time (`converters.base.register`) or installed as a plugin (the `edgediff.backends` entry point
of tests/plugins), it appears in `edgediff info`, converts, samples, gets a bench row, and passes the same
backend contract test (tests/test_converters.py) as ExecuTorch, OpenVINO and Core ML."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgediff
from edgediff.converters import base
from edgediff.errors import InputError
from edgediff.measure import info

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "tests" / "plugins"


def plugin_env() -> dict:
    path = os.pathsep.join([str(PLUGINS), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def run(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=plugin_env(), cwd=cwd,
                          timeout=600)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    import edgediff_copy_backend

    backend = base.register(edgediff_copy_backend.make_backend("eagercopy2"))
    yield backend
    base.unregister(backend.name)


def test_a_backend_registered_at_run_time_converts_loads_and_samples(registered, tmp_path):
    assert "eagercopy2" in base.names() and "eagercopy2" in base.convertible()
    assert any(r["backend"] == "eagercopy2" for r in info.backend_rows())
    art = edgediff.convert("default", backend="eagercopy2", out=tmp_path / "art")
    assert art.backend == "eagercopy2" and art.parity_db >= 35
    a, _ = edgediff.load(art).generate(n=4, seed=3)
    b, _ = edgediff.load("default").generate(n=4, seed=3)
    assert abs(a - b).max() < 1e-4  # one sampler, one seed: the same images as eager
    with pytest.raises(InputError, match="unknown eagercopy2 convert option"):
        edgediff.convert("default", backend="eagercopy2", out=tmp_path / "b", delegate="xnnpack")


def test_register_refuses_what_is_not_a_backend_or_shadows_a_builtin(registered):
    with pytest.raises(InputError, match="Backend protocol"):
        base.register(object())
    with pytest.raises(InputError, match="built in"):
        base.register(base.ModuleBackend(**{**vars(registered), "name": "openvino"}))


def test_an_installed_plugin_reaches_info_convert_sample_and_bench(tmp_path):
    out = run("-m", "edgediff", "info", cwd=tmp_path)
    assert out.returncode == 0 and re.search(r"backend eagercopy\s+fp32\s+installed", out.stdout), out.stdout
    conv = run("-m", "edgediff", "convert", "--backend", "eagercopy", "--out", "art", cwd=tmp_path)
    assert conv.returncode == 0 and "eagercopy fp32 artifact" in conv.stdout, conv.stderr
    sample = run("-m", "edgediff", "sample", "--model", "art", "--n", "4", "--out", "s.png", "--quiet",
                 cwd=tmp_path)
    assert sample.returncode == 0 and (tmp_path / "s.png").is_file(), sample.stderr
    bench = run("-m", "edgediff", "bench", "art", "--iters", "3", "--warmup", "1", "--out", "r", "--quiet",
                "--in-process", cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    rows = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [r["backend"] for r in rows] == ["eager", "eagercopy"] and rows[1]["step"]["p50"] > 0


def test_an_installed_plugin_passes_the_backend_contract_test(tmp_path):
    res = run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_converters.py"),
              "-k", "eagercopy", cwd=ROOT)
    passed = re.search(r"(\d+) passed", res.stdout)
    assert res.returncode == 0 and passed and int(passed.group(1)) >= 12, res.stdout[-2000:]
