"""`pipeline.json`: what a host needs to run a text-to-image pipeline artifact (torch-free).

The manifest names one ordinary artifact per component (each hash-checked by its own artifact.json, whose sha256
the manifest records in turn), the tokenizer's files and their sha256, and the host-side facts: max token length,
latent shape, VAE scaling factor, the VP σ table and prediction type, the guidance mode, the recommended sampler /
steps / guidance, and the scheduler's σ list for 1..50 steps (so the host needs no diffusers).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgediff.errors import InputError, ModelFileError
from edgediff.format import jsonfile
from edgediff.format.artifact_schema import safe_name
from edgediff.format.files import file_sha256, write_text

MANIFEST_FILE = "pipeline.json"
SCHEMA_VERSION = 1
COMPONENTS = ("text_encoder", "unet", "vae_decoder")
KEYS = ("schema_version", "kind", "name", "pipeline", "components", "tokenizer", "max_length", "latent_shape",
        "scaling_factor", "precond", "guidance_embed", "sampler_defaults", "sigmas")


def is_pipeline(path) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


def make(**fields) -> dict:
    fields["latent_shape"] = list(fields["latent_shape"])
    fields["sigmas"] = {str(k): list(v) for k, v in fields["sigmas"].items()}
    return {"schema_version": SCHEMA_VERSION, "kind": "text_to_image", **fields}


def write(out: Path, manifest: dict) -> Path:
    write_text(Path(out) / MANIFEST_FILE, json.dumps(manifest, indent=2))
    return Path(out) / MANIFEST_FILE


def read(path) -> dict:
    """The manifest, its fields checked and every file it hashes verified (one-line ModelFileError otherwise)."""
    path = Path(path)
    file = path / MANIFEST_FILE
    m = jsonfile.read_json(file)
    if not isinstance(m, dict) or m.get("kind") != "text_to_image":
        raise ModelFileError(f"{file} is not a text-to-image pipeline manifest; expected kind 'text_to_image'")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ModelFileError(f"{file} has schema_version {m.get('schema_version')!r}; this edgediff reads "
                             f"{SCHEMA_VERSION}")
    missing = [k for k in KEYS if k not in m]
    if missing:
        raise ModelFileError(f"{file} lacks {', '.join(missing)}; expected a manifest `edgediff convert` wrote")
    comps = m["components"]
    if not isinstance(comps, dict) or sorted(comps) != sorted(COMPONENTS):
        raise ModelFileError(f"{file} names components {sorted(comps) if isinstance(comps, dict) else comps!r}; "
                             f"expected {', '.join(COMPONENTS)}")
    for c in comps.values():
        _verify(path, file, f"{_dir(c, file)}/artifact.json", c.get("sha256"))
    tok = m["tokenizer"]
    for fname, sha in (tok.get("sha256") or {}).items() if isinstance(tok, dict) else ():
        _verify(path, file, f"{_dir(tok, file)}/{fname}", sha)
    return m


def _dir(entry, file: Path) -> str:
    d = entry.get("dir") if isinstance(entry, dict) else None
    if not isinstance(d, str) or not safe_name(d):
        raise ModelFileError(f"{file}: component dir {d!r}; expected a folder name inside the artifact")
    return d


def _verify(root: Path, file: Path, rel: str, sha) -> None:
    target = root / rel
    if not target.is_file():
        raise ModelFileError(f"{file} names {rel}, which is missing; expected the whole pipeline artifact folder")
    if not isinstance(sha, str) or file_sha256(target) != sha:
        raise ModelFileError(f"{target}: sha256 differs from {file.name}'s; the pipeline artifact was modified")


def component_choices(value, what: str, *, default) -> dict:
    """One value for every component, or {component: value} / 'unet=int8,text_encoder=fp16' (others: default)."""
    if isinstance(value, str) and "=" in value:
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        value = {k.strip(): v.strip() for k, v in pairs}
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(COMPONENTS))
        if unknown:
            raise InputError(f"unknown component(s) {', '.join(unknown)} in --{what}; expected {', '.join(COMPONENTS)}")
        return {c: value.get(c, default) for c in COMPONENTS}
    return dict.fromkeys(COMPONENTS, value)
