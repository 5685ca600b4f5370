"""Every notebook under notebooks/ executes top to bottom (outputs are stripped in git).

The quickstart runs in the default suite; the compression and mobile-export notebooks (≈ 3 minutes together, each
step of them also covered by the converter tests) run under -m slow."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
DEFAULT = {"01_quickstart.ipynb"}
PARAMS = [pytest.param(p, id=p.name, marks=() if p.name in DEFAULT else pytest.mark.slow) for p in NOTEBOOKS]


@pytest.mark.parametrize("path", PARAMS)
def test_notebook_executes(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name}: strip outputs"
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                            ).execute()
