"""OUT/README.md of `edgediff pipeline`: what was built, where it is, how fast and good it is, how to ship it."""

from __future__ import annotations

import json
from pathlib import Path

LOAD_SNIPPETS = {
    "executorch": "Android/iOS: load `{file}` with ExecuTorch's `Module` (XNNPACK backend linked in); inputs in "
                  "spec order, see below.",
    "openvino": "Laptop: `core.compile_model('{file}', device)` with device 'CPU', 'GPU' or 'NPU'; shapes are "
                "static, so NPU works.",
    "coreml": "iOS/macOS: add `{file}` to the Xcode project and call `prediction(from:)` with the inputs below.",
}


def render(p, artifacts: dict, grids: dict) -> str:
    """Markdown summary for a pipeline output directory."""
    from . import artifact

    lines = [f"# edgediff pipeline: {Path(str(p.deploy)).name}", "",
             f"Deployed model: `{p.deploy}`; compared against: {', '.join(f'`{m}`' for m in p.compare) or 'none'}.",
             ""]
    lines += _models_built(p)
    lines += ["## Artifacts", "", "| artifact | backend | precision | MB | parity dB | how to load |",
              "|---|---|---|---|---|---|"]
    spec = sampler = precond = None
    for name, path in artifacts.items():
        if path.startswith("skipped"):
            lines.append(f"| {name} | – | – | – | – | {path} |")
            continue
        art = artifact.read(path)
        spec, sampler, precond = art.spec, art.sampler_defaults, art.precond
        db = f"{art.parity_db:.1f}" if art.parity_db is not None else "needs macOS"
        rel = Path(path).relative_to(p.out)
        lines.append(f"| `{rel}` | {art.backend} | {art.precision} | {art.size_bytes / 1e6:.2f} | {db} | "
                     + LOAD_SNIPPETS[art.backend].format(file=f"{rel}/{art.model_file}") + " |")
    lines += ["", "## Samples", ""]
    lines += [f"- {name}: ![{name}]({Path(g).relative_to(p.out)})" for name, g in grids.items()]
    report = p.out / "bench" / "report.md"
    if report.is_file():
        lines += ["", "## Latency and quality (this machine)", "", report.read_text().strip(), "",
                  "Plots: `bench/latency.png`, `bench/pareto.png`."]
    if spec is not None:
        lines += ["", "## In an app", "",
                  "Each artifact is the network F only; the sampler is a few lines of host code, the same on every "
                  "runtime (numpy reference: `edgediff.sampling`).", "",
                  f"- inputs: {json.dumps({k: [list(s), d] for k, (s, d) in spec.items()})}",
                  f"- preconditioning: {json.dumps(precond)} (c_in, c_noise = log(σ)/4, c_skip, c_out)",
                  f"- recommended sampler: {json.dumps(sampler)} (σ schedule: its `sigmas` when given, else "
                  "`edgediff.sampling.schedule(sampler, steps)`)",
                  "- all of it is in each artifact's `artifact.json`; read it instead of hard-coding."]
    return "\n".join(lines) + "\n"


def _models_built(p) -> list[str]:
    """A table of the models the recipe trained, pruned or distilled in OUT/models (none: nothing)."""
    from . import checkpoint
    from .unet import count_params

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
