"""The "In an app" section of `edgediff pipeline`'s README: what a Swift or Kotlin developer needs, as numbers and
formulas — input names and shapes, the preconditioning coefficients at every σ the recommended sampler visits, the
update rule — so nothing has to be computed by calling edgediff."""

from __future__ import annotations

import json

from edgediff.format.artifact import Artifact
from edgediff.format.precond import Preconditioning
from edgediff.sampling.schedules import schedule

NOTEBOOK = "notebooks/03_mobile_export.ipynb"  # shows the same loop end to end (Core ML / ExecuTorch)
EDM_INPUT = "c_in(σ) = 1 / √(σ² + σ_d²), c_noise(σ) = ln(σ) / 4"
VP_INPUT = ("c_in(σ) = 1 / √(σ² + 1), c_noise(σ) = the fractional training step t whose σ_t is σ (linear in ln σ "
            "between entries of artifact.json's precond.sigmas, σ_t = √((1 − ᾱ_t)/ᾱ_t))")
FORMULAS = {
    "edm": ["c_skip(σ) = σ_d² / (σ² + σ_d²)", "c_out(σ) = σ·σ_d / √(σ² + σ_d²)", EDM_INPUT],
    "consistency": ["c_skip(σ) = σ_d² / ((σ − σ_min)² + σ_d²)", "c_out(σ) = (σ − σ_min)·σ_d / √(σ² + σ_d²)",
                    EDM_INPUT],
    "vp-epsilon": ["F is ε: c_skip(σ) = 1, c_out(σ) = −σ", VP_INPUT],
    "vp-v_prediction": ["F is v: c_skip(σ) = 1 / (σ² + 1), c_out(σ) = −σ / √(σ² + 1)", VP_INPUT],
    "vp-sample": ["F is x0: c_skip(σ) = 0, c_out(σ) = 1", VP_INPUT],
}
UPDATES = {
    "consistency": "x0 = D(x, σ_i); x = x0 + √(σ_{i+1}² − σ_min²)·z with fresh z ~ N(0, 1) while σ_{i+1} > 0, "
                   "else the image is x0 (Song et al. 2023, Alg. 1)",
    "euler": "x0 = D(x, σ_i); x = x0 + (x − x0)·σ_{i+1}/σ_i (deterministic DDIM in σ-space)",
    "tcd": "x0 = D(x, σ_i); while σ_{i+1} > 0: σ' = (1 − γ)·σ_{i+1}, x = x0 + (x − x0)·σ'/σ_i + √(σ_{i+1}² − σ'²)·z "
           "with fresh z ~ N(0, 1) (no noise when γ = 0), else the image is x0 (TCD, Zheng et al. 2024)",
    "heun": "Euler step to σ_{i+1}, then average the slopes (x − D)/σ at both ends while σ_{i+1} > 0 "
            "(Karras et al. 2022, Alg. 1)",
    "dpmpp_2m": "x0 = D(x, σ_i); h = ln(σ_i/σ_{i+1}); from the second step on x0' = (1 + 1/(2r))·x0 − (1/(2r))·x0_prev "
                "with r = h_prev/h; x = (σ_{i+1}/σ_i)·x − (e^(−h) − 1)·x0' (DPM-Solver++(2M), Lu et al. 2022); the "
                "last step to σ = 0 returns x0",
}


def update_rule(sampler_defaults: dict) -> str:
    """The recommended sampler's update per step, with its γ when it is tcd."""
    sampler = sampler_defaults.get("sampler", "dpmpp_2m")
    rule = UPDATES.get(sampler, "see edgediff/sampling/samplers.py")
    return rule + (f"; γ = {sampler_defaults.get('gamma', 0.3)}" if sampler == "tcd" else "")


def in_an_app(art: Artifact) -> list[str]:
    """Markdown lines: inputs, formulas, the σ schedule with every coefficient, the update rule, the notebook."""
    p = Preconditioning.from_dict(art.precond)
    d = art.sampler_defaults
    sampler, steps = d.get("sampler", "dpmpp_2m"), int(d.get("steps", 10))
    sigmas = schedule(sampler, steps, sigma_min=p.sigma_min, sigma_max=p.sigma_max, sigmas=d.get("sigmas"))
    inputs = ", ".join(f"`{k}` {dtype}{list(shape)}" for k, (shape, dtype) in art.spec.items())
    lines = ["## In an app", "",
             "Each artifact is the network F only; the sampler is a few lines of host code, the same on every "
             "runtime. Everything below is also in each artifact's `artifact.json`.", "",
             f"- inputs, in this order: {inputs}; output F, float32{list(art.spec['x'][0])}",
             "- `x` = c_in(σ)·x_σ, `t` = c_noise(σ)"
             + (", `label` = class index (the class count means unconditional)" if "label" in art.spec else "")
             + (", `w` = guidance scale (1 = none): one call per step however strong" if "w" in art.spec else ""),
             f"- denoised image D(x, σ) = c_skip(σ)·x + c_out(σ)·F, with σ_d = {p.sigma_data}, "
             f"σ_min = {p.sigma_min:g}, σ_max = {p.sigma_max:g} ({p.kind} preconditioning):",
             *[f"  - {f}" for f in FORMULAS[p.kind if p.kind != "vp" else f"vp-{p.prediction}"]],
             f"- recommended sampler: {sampler} × {steps} steps, guidance {d.get('guidance', 1.0)}; start from "
             f"x = σ_0·z, z ~ N(0, 1) of shape {list(art.spec['x'][0])}",
             f"- update per step: {update_rule(d)}", "",
             "| step i | σ_i | c_in | t = c_noise | c_skip | c_out |", "|---|---|---|---|---|---|"]
    for i, s in enumerate(sigmas[:-1]):
        lines.append(f"| {i} | {s:.6g} | {p.c_in(s):.6g} | {p.c_noise(s):.6g} | {p.c_skip(s):.6g} | "
                     f"{p.c_out(s):.6g} |")
    lines += ["", f"σ schedule as a literal: `{json.dumps([round(s, 6) for s in sigmas])}` (the last 0 ends the "
              f"loop). The notebook `{NOTEBOOK}` runs this loop against the converted files."]
    return lines
