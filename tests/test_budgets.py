from pathlib import Path

import pytest

from edgediff.errors import InputError
from edgediff.measure import budgets

SHIPPED = Path(__file__).resolve().parent.parent / "device_tests" / "budgets.toml"

TOML = """
[[budget]]                      # any model on OpenVINO, any device
backend = "openvino"
ms_per_step_p50 = 50

[[budget]]
model = "mnist-*"
backend = "openvino"
device = "CPU"
ms_per_step_p50 = 10
image_ms = 120
min_parity_db = 35

[[budget]]                      # same specificity as the one above: the earlier entry wins
model = "mnist-tiny"
backend = "openvino"
device = "*"
ms_per_step_p50 = 99

[[budget]]
model = "mnist-tiny"
backend = "executorch"
device = "android"
precision = "int8"
ms_per_step_p50 = 8
peak_rss_mb = 200
"""


def row(**kw):
    base = {"model": "mnist-tiny", "backend": "openvino", "device": "CPU", "precision": "fp32",
            "step": {"p50": 5.0, "p90": 6.0}, "image_ms": 100.0, "load_ms": 300.0, "parity_db": 80.0,
            "peak_rss_mb": None}
    return base | kw


@pytest.fixture
def table(tmp_path):
    (tmp_path / "b.toml").write_text(TOML)
    return budgets.load(tmp_path / "b.toml")


def test_most_specific_match_wins_with_wildcards_and_case(table):
    assert budgets.lookup(table, row()).limits["ms_per_step_p50"] == 10
    assert budgets.lookup(table, row(device="cpu")).limits["ms_per_step_p50"] == 10
    assert budgets.lookup(table, row(device="GPU")).limits["ms_per_step_p50"] == 99
    assert budgets.lookup(table, row(model="other", device="NPU")).limits["ms_per_step_p50"] == 50
    assert budgets.lookup(table, row(backend="coreml")) is None


def test_verdicts_within_over_and_record_only(table):
    ok = budgets.verdict(row(), table)
    assert ok.status == budgets.WITHIN and len(ok.checks) == 3 and all(c.ok for c in ok.checks)
    assert ok.text().startswith("within [model=mnist-* backend=openvino device=CPU precision=*]")
    slow = budgets.verdict(row(step={"p50": 12.0, "p90": 13.0}, parity_db=30.0), table)
    assert slow.status == budgets.OVER
    assert "ms_per_step_p50 12.00 ≤ 10 FAILED" in slow.text() and "min_parity_db 30.00 ≥ 35 FAILED" in slow.text()
    free = budgets.verdict(row(backend="coreml"), table)
    assert free.status == budgets.RECORD_ONLY and "no budget" in free.text()


def test_unmeasured_values_are_not_held_against_a_row(table):
    phone = row(backend="executorch", device="android", precision="int8", step={"p50": 7.0, "p90": 7.5})
    v = budgets.verdict(phone, table)
    assert v.status == budgets.WITHIN and "peak_rss_mb – ≤ 200" in v.text()
    only_rss = budgets.parse({"budget": [{"backend": "*", "peak_rss_mb": 100}]})
    assert budgets.verdict(row(), only_rss).status == budgets.RECORD_ONLY


@pytest.mark.parametrize("text, match", [
    ("[[budget]]\nbackend = 'openvino'\nms_per_step = 3\n", "unknown keys \\['ms_per_step'\\]"),
    ("[[budget]]\nbackend = 'openvino'\nms_per_step_p50 = -1\n", "positive numbers"),
    ("[[budget]]\nbackend = 3\n", "non-empty strings"),
    ("[budgets]\n", "expected only \\[\\[budget\\]\\] tables"),
    ("[[budget]\n", "cannot read budgets file"),
])
def test_bad_budget_files_are_input_errors_naming_the_entry(tmp_path, text, match):
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(InputError, match=match):
        budgets.load(tmp_path / "b.toml")


def test_shipped_budgets_parse_and_cover_the_default_model_on_the_host():
    table = budgets.load(SHIPPED)
    for backend, device in (("openvino", "CPU"), ("executorch", "CPU"), ("eager", "CPU")):
        assert budgets.lookup(table, row(backend=backend, device=device)) is not None, (backend, device)
