"""OUT/README.md of `edgediff pipeline`: what was built, where it is, how fast and good it is, how to ship it."""

from __future__ import annotations

from pathlib import Path

from edgediff.converters import base
from edgediff.format import artifact
from edgediff.models import checkpoint
from edgediff.models.unet import count_params
from edgediff.workflow.app_guide import in_an_app


def render(p, artifacts: dict, grids: dict) -> str:
    """Markdown summary for a pipeline output directory."""

    lines = [f"# edgediff pipeline: {Path(str(p.deploy)).name}", "",
             f"Deployed model: `{p.deploy}`; compared against: {', '.join(f'`{m}`' for m in p.compare) or 'none'}.",
             ""]
    lines += _models_built(p)
    lines += ["## Artifacts", "", "| artifact | backend | precision | MB | parity dB | how to load |",
              "|---|---|---|---|---|---|"]
    last = None
    for name, path in artifacts.items():
        if path.startswith("skipped"):
            lines.append(f"| {name} | – | – | – | – | {path} |")
            continue
        art = artifact.read(path)
        last = art
        db = f"{art.parity_db:.1f}" if art.parity_db is not None else art.op_coverage.get("parity", "not measured")
        rel = Path(path).relative_to(p.out)
        lines.append(f"| `{rel}` | {art.backend} | {art.precision} | {art.size_bytes / 1e6:.2f} | {db} | "
                     + base.get(art.backend).app_hint.format(file=f"{rel}/{art.model_file}") + " |")
    lines += ["", "## Samples", ""]
    lines += [f"- {name}: ![{name}]({Path(g).relative_to(p.out)})" for name, g in grids.items()]
    report = p.out / "bench" / "report.md"
    if report.is_file():
        lines += ["", "## Latency and quality (this machine)", "", report.read_text().strip(), "",
                  "Plots: `bench/latency.png`, `bench/pareto.png`."]
    if last is not None:
        lines += ["", *in_an_app(last)]
    return "\n".join(lines) + "\n"


def _models_built(p) -> list[str]:
    """A table of the models the recipe trained, pruned or distilled in OUT/models (none: nothing)."""

    rows = []
    for stage in ("base", "pruned", "student"):
        d = p.out / "models" / stage
        if (d / checkpoint.CONFIG_FILE).is_file():
            md = checkpoint.load(d)
            steps = md.meta.get("training", {}).get("steps", "?")
            rows.append(f"| `{d.relative_to(p.out)}` | {stage} | {count_params(md.net) / 1e6:.2f} M | {steps} | "
                        f"{md.sampler_defaults.get('sampler')} × {md.sampler_defaults.get('steps')} |")
    if not rows:
        return []
    return ["## Models built by this run", "", "| model dir | role | params | training steps | sampler |",
            "|---|---|---|---|---|", *rows, ""]
