"""The package's structure: no import cycles (module-level and function-local imports alike), lower layers never
import higher ones, and no module over 300 lines without a reason in its docstring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Layers from the bottom up; a module may import its own layer's modules and any layer below, never above.
LAYERS = ["errors", "format", "sampling", "models", "training", "converters", "runtime", "measure", "workflow",
          "api"]
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    """Every first-party module, by its dotted name as installed (converters/ is edgediff.converters)."""
    out = {}
    for folder, prefix in (("edgediff", "edgediff"), ("converters", "edgediff.converters")):
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """First-party modules `name` imports anywhere in its file (including inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def layer(module: str) -> int:
    parts = module.split(".")
    if module == "edgediff" or parts[1] in ("cli", "cli_parser", "__main__"):
        return LAYERS.index("api")
    return LAYERS.index(parts[1])


def test_the_import_graph_has_no_cycle():
    assert find_cycle(graph()) is None, f"import cycle: {' -> '.join(find_cycle(graph()))}"


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_local_imports_count(tmp_path):
    """The graph sees imports inside functions, so a lazy import cannot hide a cycle."""
    (tmp_path / "m.py").write_text("def f():\n    from edgediff.format import files\n")
    assert imports_of("edgediff.x", tmp_path / "m.py", {"edgediff.format.files"}) == {"edgediff.format.files"}


def test_lower_layers_never_import_higher_ones():
    upward = sorted(f"{a} -> {b}" for a, deps in graph().items() for b in deps if layer(b) > layer(a))
    assert upward == []


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_size(name):
    path = _modules()[name]
    lines = len(path.read_text().splitlines())
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert lines <= MAX_LINES or "over 300 lines" in doc, f"{path} has {lines} lines and no reason in its docstring"


def test_format_layer_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, edgediff.format.artifact, edgediff.format.staging, edgediff.format.model_dir, "
            "edgediff.format.images, edgediff.format.configs, edgediff.sampling.samplers\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
