"""Device tests: run shipped-model artifacts on this machine's runtimes and devices, compare them with eager.

`pytest device_tests --artifacts DIR` tests every artifact dir under DIR; without it, the model named by `--model`
('default' unless given) is converted on the fly for each installed backend. Latency tests run each artifact on
every target of its backend (OpenVINO CPU/GPU/NPU, ExecuTorch host and Android over adb, Core ML's compute units);
a target this machine lacks is skipped with a reason naming the missing device, OS or tool. Measured rows go to
`--report DIR` (report.jsonl appended, report.md rewritten), checked against `--budgets` (device_tests/budgets.toml).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import platform
from pathlib import Path

import pytest
import torch

from edgediff.errors import ModelFileError
from edgediff.format import artifact
from edgediff.models import checkpoint

# The default run spreads test files over up to 2 pytest-xdist workers (pyproject's addopts); each worker (and the
# commands it starts) gets its share of the cores, so two workers never oversubscribe CI's 2 cores.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, min(2, (os.cpu_count() or 1) // _workers))))
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
BACKENDS = {"executorch": "executorch.exir", "openvino": "openvino", "coreml": "coremltools",
            "litert": "ai_edge_litert"}
TARGETS = {"executorch": ("host", "android"), "openvino": ("CPU", "GPU", "NPU"),
           "coreml": ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL"), "litert": ("host", "android", "android-gpu")}
PHONE = ("android", "android-gpu")
REPORT_KEY = pytest.StashKey[Path]()
_CONVERTED: dict[str, Path] = {}  # backend -> artifact converted this session (one per backend, whatever the target)


def pytest_addoption(parser):
    parser.addoption("--artifacts", default=None, help="directory holding artifact dirs (artifact.json inside)")
    parser.addoption("--model", default="default", help="model the artifacts come from (and the eager reference)")
    parser.addoption("--device", default="CPU", help="OpenVINO device for the parity test's artifact runners")
    parser.addoption("--executor-runner", default=None,
                     help="executor_runner binary built for the phone (default: $EDGEDIFF_EXECUTOR_RUNNER)")
    parser.addoption("--benchmark-model", default=None,
                     help="LiteRT benchmark_model binary built for the phone (default: $EDGEDIFF_LITERT_BENCHMARK)")
    parser.addoption("--adb-serial", default=None, help="phone to use when `adb devices` lists several")
    parser.addoption("--pipeline", default=None, help="a text-to-image pipeline artifact to test on the devices")
    parser.addoption("--pipeline-folder", default=None,
                     help="the diffusers folder --pipeline was converted from (the eager reference)")
    parser.addoption("--budgets", default=str(Path(__file__).with_name("budgets.toml")),
                     help="latency budgets TOML (per model/backend/device/precision)")
    parser.addoption("--report", default=None,
                     help="folder for the measured rows: report.jsonl (appended) and report.md (default: a temp dir)")


def discover(root: os.PathLike) -> list[Path]:
    """Every artifact dir at or below `root`."""
    return sorted(p.parent for p in Path(root).rglob(artifact.ARTIFACT_FILE))


def _backend_of(path: Path) -> str:
    try:
        return str(json.loads((path / artifact.ARTIFACT_FILE).read_text())["backend"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"  # the tests themselves report what is wrong with it


def _sources(config) -> list[tuple[str, str, str]]:
    """(artifact_source, test id, backend) for --artifacts DIR, or one on-the-fly conversion per backend."""
    root = config.getoption("--artifacts")
    if not root:
        return [(b, b, b) for b in BACKENDS]
    return [(str(d), str(d.relative_to(root)) or ".", _backend_of(d)) for d in discover(root)]


def pytest_generate_tests(metafunc):
    if "artifact_source" not in metafunc.fixturenames:
        return
    sources = _sources(metafunc.config)
    if "target" not in metafunc.fixturenames:
        metafunc.parametrize("artifact_source", [s for s, _, _ in sources], ids=[i for _, i, _ in sources],
                             scope="session")
        return
    params = []
    for source, ident, backend in sources:
        for target in TARGETS.get(backend, ("CPU",)):
            reason = unavailable(backend, target, metafunc.config)
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            params.append(pytest.param(source, target, id=f"{ident}-{target}", marks=marks))
    metafunc.parametrize(("artifact_source", "target"), params, scope="session")


def unavailable(backend: str, target: str, config) -> str | None:
    """Why `target` of `backend` cannot run on this machine (naming the missing device, OS or tool), or None."""
    system = platform.system()
    if backend == "coreml" and system != "Darwin":
        return f"Core ML prediction needs macOS (this is {system})"
    if backend in BACKENDS and importlib.util.find_spec(BACKENDS[backend].split(".")[0]) is None:
        return f"{backend} is not installed (pip install 'edgediff[{backend}]')"
    if backend == "openvino" and target not in openvino_devices():
        return f"OpenVINO device {target} is not available here (available_devices: {', '.join(openvino_devices())})"
    if target in PHONE:
        return _android_unavailable(backend, config)
    return None


@functools.cache
def openvino_devices() -> tuple[str, ...]:
    from edgediff.converters import openvino

    return tuple(openvino.core().available_devices)


def _android_unavailable(backend: str, config) -> str | None:
    from litert_android import find_benchmark  # device_tests/ is on sys.path (no __init__.py)

    from edgediff.measure import adb

    try:
        adb.pick_device(adb.devices(), config.getoption("--adb-serial"))
        if backend == "litert":
            find_benchmark(config.getoption("--benchmark-model"))
        else:
            adb.find_runner(config.getoption("--executor-runner"))
    except adb.AdbError as e:
        return f"{'LiteRT' if backend == 'litert' else 'ExecuTorch'} on Android: {e}"
    return None


@pytest.fixture(scope="session")
def model(pytestconfig) -> checkpoint.ModelDir:
    """The eager reference model; skips while it has no trained weights."""
    try:
        return checkpoint.load(pytestconfig.getoption("--model"))
    except ModelFileError as e:
        pytest.skip(f"no reference model: {e}")


@pytest.fixture(scope="session")
def artifact_dir(artifact_source, request, tmp_path_factory) -> Path:
    """An artifact dir: given by --artifacts, or converted now from --model for one backend (once per session)."""
    if artifact_source not in BACKENDS:
        return Path(artifact_source)
    if artifact_source not in _CONVERTED:
        pytest.importorskip(BACKENDS[artifact_source])
        _CONVERTED[artifact_source] = _convert(artifact_source, request.getfixturevalue("model"), tmp_path_factory)
    return _CONVERTED[artifact_source]


def _convert(backend: str, model: checkpoint.ModelDir, tmp_path_factory) -> Path:
    from edgediff.converters import get

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    mod = get(backend)
    c = model.unet
    spec = artifact.make_spec(channels=c.in_channels, resolution=c.resolution, num_classes=c.num_classes,
                              label_dtype=mod.label_dtype)
    out = tmp_path_factory.mktemp(backend) / "artifact"
    return mod.convert(model.net, spec, out, precond=model.precond, sampler_defaults=model.sampler_defaults,
                       source={"model": str(model.path)}).path


@pytest.fixture(scope="session")
def budget_table(pytestconfig):
    """The budgets of --budgets (a missing file is an error: pass an empty one to record only)."""
    from edgediff.measure import budgets

    return budgets.load(pytestconfig.getoption("--budgets"))


@pytest.fixture(scope="session")
def device_report(pytestconfig, tmp_path_factory):
    """Rows the latency tests measured; written to --report (or a temp dir) when the session ends."""
    rows: list[dict] = []
    yield rows
    if rows:
        out = Path(pytestconfig.getoption("--report") or tmp_path_factory.getbasetemp() / "device-report")
        write_report(rows, out)
        pytestconfig.stash[REPORT_KEY] = out


def write_report(rows: list[dict], out: Path) -> None:
    """Append the rows to report.jsonl; write this session's table and budget verdicts as report.md."""
    from edgediff.format.files import write_text
    from edgediff.measure import bench, report

    report.append_jsonl(out / "report.jsonl", rows)
    h = rows[0]["host"]
    verdicts = "\n".join(f"- {r['test']}: {r['budget_verdict']}" for r in rows)
    text = report.bench_markdown(rows, h, bench.peak_gflops(h)) + "\n\nBudgets:\n" + verdicts + "\n"
    write_text(out / "report.md", text)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if REPORT_KEY in config.stash:
        terminalreporter.write_line(f"device report: {config.stash[REPORT_KEY] / 'report.md'} (+ report.jsonl)")
