import subprocess
import sys

HEAVY = ("executorch", "openvino", "coremltools", "nncf", "torch_pruning", "diffusers")


def test_import_loads_no_backend():
    code = ("import sys, edgediff, edgediff.cli, edgediff.sampling.generate, edgediff.runtime.open\n"
            "from edgediff.converters import base\n"
            "backends = [base.get(n) for n in base.names()]  # every backend module, runtimes not yet imported\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_unsafe_loaders_in_the_package():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    bad = re.compile(r"torch\.load\((?![^)]*weights_only=True)|pickle\.loads?\(|allow_pickle=True|yaml\.load\(")
    hits = [f"{p}:{i}" for folder in ("edgediff", "converters") for p in (root / folder).rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert hits == []
