import json

from edgediff.report import markdown_table, write_json


def test_markdown_table_and_json(tmp_path):
    t = markdown_table(["a", "b"], [[1, "x"], [2.5, "y"]])
    assert t.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 2.5 | y |"]
    write_json(tmp_path / "r.json", [{"a": 1}])
    assert json.loads((tmp_path / "r.json").read_text()) == [{"a": 1}]
    write_json(None, [{"a": 1}])
