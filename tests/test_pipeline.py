"""`edgediff pipeline` on a small model: stages, caching by content hash, the optional recipe, and Ctrl-C + re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from edgediff.errors import InputError
from edgediff.models import checkpoint
from edgediff.workflow import pipeline

OV = (("openvino", "fp32"),)
SMALL_RUN = ["--targets", "openvino-fp32", "--n", "4", "--student", "none", "--pruned", "none", "--quiet"]


def _default_sigint():
    """In the child before exec: SIGINT back to default, so Python turns it into KeyboardInterrupt even when this
    test runs under a shell that started it ignoring SIGINT (a background CI job does)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stamps(out) -> dict[str, float]:
    return {f.stem: f.stat().st_mtime_ns for f in (out / ".stages").glob("*.json")}


def test_stages_run_in_order_stop_at_an_unselected_one_and_are_cached(small_model_dir, tmp_path):
    out = tmp_path / "run"
    p = pipeline.plan(str(small_model_dir), out, student=None, pruned=None, targets=OV, n=4)
    assert p.deploy == str(small_model_dir) and p.compare == ()
    assert pipeline.run(p, stages=("convert", "sample"), progress=False) == out  # stops before bench
    assert set(stamps(out)) == {"convert", "sample"} and not (out / "bench").exists()
    assert {g.name for g in (out / "grids").iterdir()} == {"eager.png", "openvino-fp32.png"}

    readme = pipeline.run(p, progress=False)
    assert readme == out / "README.md"
    for f in ("report.json", "report.md", "latency.png", "pareto.png"):
        assert (out / "bench" / f).is_file(), f
    text = readme.read_text()
    assert "artifacts/openvino-fp32" in text and "## In an app" in text and "ms/step" in text
    table = [line for line in text.splitlines() if line.startswith("| `artifacts/") or line.startswith("| artifact")]
    assert len({line.count("|") for line in table}) == 1, table  # no stray '|' splitting a cell

    before, t0 = stamps(out), time.perf_counter()
    pipeline.run(p, progress=False)
    assert stamps(out) == before and time.perf_counter() - t0 < 10  # nothing re-ran

    # new weights change the convert key: everything downstream runs again
    net = checkpoint.load(small_model_dir)
    for prm in net.net.parameters():
        prm.data.mul_(1.01)
    checkpoint.save(small_model_dir, net.net, net.meta)
    pipeline.run(p, progress=False)
    after = stamps(out)
    assert all(after[s] != before[s] for s in ("convert", "sample", "bench", "readme"))


def test_recipe_trains_prunes_and_distils_into_out_models(small_model_dir, tmp_path):
    out = tmp_path / "run"
    recipe = pipeline.Recipe(config=str(small_model_dir), train_steps=2, prune=0.5, prune_steps=2, distill_steps=2,
                             threads=1)
    p = pipeline.plan("default", out, recipe=recipe, targets=OV, n=4)
    models = out / "models"
    assert p.deploy == str(models / "student") and p.compare == (str(models / "base"), str(models / "pruned"))
    assert pipeline.run(p, stages=("train", "prune", "distill"), progress=False) == out
    base, pruned, student = (checkpoint.load(models / m) for m in ("base", "pruned", "student"))
    assert sum(x.numel() for x in pruned.net.parameters()) < 0.5 * sum(x.numel() for x in base.net.parameters())
    assert student.unet.guidance_embed and student.meta["distillation"]["teacher"] == "pruned"
    assert student.unet.channels == pruned.unet.channels  # the student is distilled from the pruned model
    before = stamps(out)
    pipeline.run(p, stages=("train", "prune", "distill"), progress=False)
    assert stamps(out) == before


@pytest.mark.parametrize("bad", [dict(prune=1.0), dict(prune=-0.1), dict(distill_steps=-1), dict(train_steps=0)])
def test_bad_recipe_is_refused(bad):
    with pytest.raises(InputError):
        pipeline.Recipe(**bad)


def test_bad_targets_and_stages_are_refused(small_model_dir, tmp_path):
    for bad in ((("tflite", "int8"),), ("foo",), ()):
        with pytest.raises(InputError, match="unknown targets"):
            pipeline.plan(str(small_model_dir), tmp_path, targets=bad)
    assert pipeline.plan(str(small_model_dir), tmp_path, targets=("openvino-fp32",)).targets == OV
    p = pipeline.plan(str(small_model_dir), tmp_path, targets=OV)
    with pytest.raises(InputError, match="unknown stages"):
        pipeline.run(p, stages=("deploy",))


def test_ctrl_c_mid_stage_then_rerun_completes(small_model_dir, tmp_path):
    """SIGINT to the whole process group (what Ctrl-C sends) during bench: exit 130; the same command then finishes."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "edgediff", "pipeline", "--model", str(small_model_dir), "--out", str(out),
           *SMALL_RUN[:-1]]  # with progress bars: they say which stage is running
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                preexec_fn=_default_sigint)
        deadline = time.monotonic() + 300
        while "bench:" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # inside a bench subprocess
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=120)
    assert rc == 130, (rc, log.read_text()[-2000:])
    assert "interrupted; re-run the same command" in log.read_text()
    assert "bench" not in stamps(out) and not list(out.glob("**/*.tmp*"))

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "README.md").is_file() and (out / "bench" / "report.md").is_file()
    assert json.loads((out / ".stages" / "convert.json").read_text())["result"]["openvino-fp32"]
