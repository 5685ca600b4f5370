"""`edgediff train`: one entry point that trains whichever model a config.json describes."""

from __future__ import annotations

from pathlib import Path

from edgediff.format.model_dir import AUTOENCODER_FORMAT, TEXT_MODEL_FORMAT


def fit_model_config(meta: dict, out: Path, *, resume: bool = True, progress: bool = True,
                     device: str = "cpu", **overrides) -> Path:
    """Train the model a config.json describes ("unet" + "training" + "precond", or an "autoencoder" directory's
    "autoencoder" + "training", or a text model's "text_model" + "training" + "precond"), with overrides of
    TrainConfig; resumes from `out`'s latest checkpoint."""
    if meta.get("format") in (AUTOENCODER_FORMAT, TEXT_MODEL_FORMAT):
        if meta["format"] == AUTOENCODER_FORMAT:
            from edgediff.training import autoencode as recipe
        else:
            from edgediff.training import text_model as recipe
        return recipe.fit_config(meta, out, resume=resume, progress=progress, device=device, **overrides)
    from edgediff.training import loop

    return loop.fit_unet_config(meta, out, resume=resume, progress=progress, device=device, **overrides)
