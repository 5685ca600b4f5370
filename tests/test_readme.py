import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_opens_with_two_commands_and_ci_runs_the_second_verbatim():
    main_job, tests = readme_commands()
    assert "edgediff pipeline" in main_job and "pytest" in tests
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines


def python_api_snippet() -> str:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1]
    return re.findall(r"```python\n(.+?)\n```", section, re.S)[0]


def test_readme_python_api_snippet_runs(tmp_path, monkeypatch):
    """README's "Python API" snippet, as written: convert for OpenVINO, load, generate 8 images, save a grid."""
    import pytest

    pytest.importorskip("openvino")
    code = python_api_snippet()
    lines = [ln for ln in code.splitlines() if ln.strip() and not ln.startswith("import ")]
    assert len(lines) <= 6, code
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), scope)  # noqa: S102 - the project's own README
    assert scope["images"].shape == (8, 1, 32, 32) and len(scope["labels"]) == 8
    assert (tmp_path / "grid.png").stat().st_size > 0 and (tmp_path / "art" / "ov" / "artifact.json").is_file()
    assert scope["model"].backend == "openvino" and scope["model"].sampler_defaults == scope["art"].sampler_defaults
