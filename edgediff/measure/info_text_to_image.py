"""`edgediff info` on a text-to-image folder, the project's own text model or a pipeline artifact: one row per
component, read from files only (parameter counts from the safetensors headers, so a 1 B-parameter folder is
described without loading it)."""

from __future__ import annotations

import math
from pathlib import Path

from edgediff.format import artifact, model_dir, pipeline_manifest, text_to_image_dir
from edgediff.format.diffusers_dir import SCHEDULER_FILE, read_json

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1}
TEXT_MODEL_PARTS = {"text_encoder": ("weights.safetensors", "text_encoder."), "unet": ("weights.safetensors", "unet."),
                    "vae_decoder": ("vae/weights.safetensors", "decoder.")}  # file and key prefix per component


def describe(path) -> dict:
    """A row for a diffusers text-to-image folder or an edgediff pipeline artifact (ModelFileError otherwise)."""
    path = Path(path)
    if pipeline_manifest.is_pipeline(path):
        return _artifact(path)
    found = model_dir.prompt_model(path)
    if found is not None and model_dir.is_text_model(found):
        return _text_model(found)
    return _folder(path)


def text_model_components(path: Path) -> dict:
    """{component: {"params", "weights_mb"}} of a text-model directory, from its safetensors headers (the MB its
    tensors take as stored, e.g. float16)."""
    out = {}
    for name, (file, prefix) in TEXT_MODEL_PARTS.items():
        params, nbytes = _params(path / file, prefix, with_bytes=True)
        out[name] = {"class": "edgediff", "params": params, "weights_mb": round(nbytes / 1e6, 2)}
    return out


def _text_model(path: Path) -> dict:
    meta = read_json(path / model_dir.CONFIG_FILE)
    unet = meta["text_model"]["unet"]
    ae = read_json(path / meta.get("autoencoder_dir", "vae") / model_dir.CONFIG_FILE)
    size = unet["resolution"]
    state = meta.get("training_state") or {}
    return {"kind": "text_to_image", "name": meta.get("name", path.name), "path": str(path),
            "source": f"edgediff text model ({state.get('step', 0)} steps trained), EDM, {ae.get('name', 'tiny')} "
                      f"autoencoder", "latent_shape": [unet["in_channels"], size, size], "guidance_embed": False,
            "components": text_model_components(path)}


def _folder(path: Path) -> dict:
    folder = text_to_image_dir.locate(path)
    components = {}
    for name, part in text_to_image_dir.COMPONENT_FOLDERS.items():
        files = sorted((path / part).glob("*.safetensors"))
        components[name] = {"class": folder.classes[part], "params": sum(_params(f) for f in files),
                            "weights_mb": round(sum(f.stat().st_size for f in files) / 1e6, 2)}
    unet = read_json(path / "unet" / "config.json")
    sched = read_json(path / "scheduler" / SCHEDULER_FILE)
    size = unet.get("sample_size")
    size = size[0] if isinstance(size, list) else size
    return {"kind": "text_to_image", "name": path.resolve().name, "path": str(path), "source":
            f"diffusers {folder.pipeline}, {sched.get('_class_name')}, {sched.get('prediction_type', 'epsilon')}",
            "latent_shape": [unet.get("in_channels"), size, size],
            "guidance_embed": unet.get("time_cond_proj_dim") is not None, "components": components}


def _artifact(path: Path) -> dict:
    m = pipeline_manifest.read(path)
    components = {}
    for name, c in m["components"].items():
        art = artifact.read(path / c["dir"])
        components[name] = {"backend": c["backend"], "precision": c["precision"], "parity_db": c["parity_db"],
                            "size_mb": round(art.size_bytes / 1e6, 2), "convert_s": c["convert_s"],
                            "peak_rss_mb": c["peak_rss_mb"], "inputs": {k: list(s) for k, (s, _) in art.spec.items()}}
    return {"kind": "text_to_image", "name": m["name"], "path": str(path), "source": f"edgediff pipeline artifact "
            f"({m['pipeline']})", "latent_shape": m["latent_shape"], "guidance_embed": m["guidance_embed"],
            "sampler_defaults": m["sampler_defaults"], "end_to_end": m.get("end_to_end"), "components": components}


def _params(file: Path, prefix: str = "", *, with_bytes: bool = False):
    """Float tensors' elements under `prefix` (integer tables, e.g. a token map, are not parameters); with
    `with_bytes` also the bytes every tensor under `prefix` takes in the file."""
    from safetensors import safe_open

    total = nbytes = 0
    with safe_open(str(file), "np") as f:
        for key in (k for k in f.keys() if k.startswith(prefix)):
            s = f.get_slice(key)
            n = math.prod(s.get_shape())
            nbytes += n * _DTYPE_BYTES.get(s.get_dtype(), 4)
            total += n if s.get_dtype().startswith(("F", "BF")) else 0
    return (total, nbytes) if with_bytes else total


def format_rows(row: dict) -> list[str]:
    """Table lines for one text-to-image row (under the pixel models' header)."""
    params = sum(c.get("params", 0) for c in row["components"].values())
    lines = [f"{row['name']:<14}{f'{params / 1e6:.2f}M' if params else '-':>10}"
             f"{'':>13}{'latent ' + 'x'.join(map(str, row['latent_shape'])):>16}  {row['source']}"]
    for name, c in row["components"].items():
        if "backend" in c:
            db = "not measured here" if c["parity_db"] is None else f"{c['parity_db']:.1f} dB"
            lines.append(f"  {name:<13} {c['backend']} {c['precision']}, {c['size_mb']:.2f} MB, parity {db}, "
                         f"converted in {c['convert_s']:.1f} s (peak RSS {c['peak_rss_mb']:.0f} MB)")
        else:
            lines.append(f"  {name:<13} {c['class']}, {c['params'] / 1e6:.2f}M params, {c['weights_mb']:.2f} MB")
    e2e = row.get("end_to_end")
    if e2e:
        lines.append(f"  image check   {e2e['psnr_db']:.1f} dB vs eager" if "psnr_db" in e2e
                     else f"  image check   skipped: {e2e['skipped']}")
    return lines
