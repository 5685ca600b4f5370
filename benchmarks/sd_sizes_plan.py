"""The cells of benchmarks/sd_sizes.py: which measurements one run makes, what each needs first, and the one-line
reason for those that cannot be measured here (no torch; imported by the parent process)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sd_sizes_build import COMPONENTS, folder_name

EDGEDIFF_BACKENDS = ("openvino", "executorch", "coreml")
PEERS = ("eager", "compile", "optimum")
DECODER_OF = {"text_encoder": "vae", "unet": "vae", "vae_decoder": "vae", "taesd_decoder": "taesd"}
NOT_HERE = {"coreml": "Core ML artifacts run only on macOS (converted and sized here, not timed)"}
OPTIMUM_TAESD = "optimum-intel 2.2.0 exports the folder's AutoencoderKL only (its exporter has no AutoencoderTiny)"


@dataclass(frozen=True)
class Cell:
    """One measurement: its worker spec, the cells it needs first, or the reason it is not run here."""

    key: str
    spec: dict
    env: str = "main"  # "main": edgediff's environment; "optimum": the peer's
    needs: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What the command line asked for."""

    sizes: tuple[str, ...]
    resolutions: tuple[int, ...]
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    peers: tuple[str, ...]
    decoders: tuple[str, ...]
    steps: tuple[int, ...]
    scale: int
    work: Path
    threads: int
    budget: float
    samples: int | None = None  # optimum hybrid int8 calibration samples (None: its default)
    check_steps: int | None = None  # edgediff's recorded images' steps (None: the pipeline's recommended)


def cells(p: Plan) -> list[Cell]:
    """Every cell of the run, dependencies first."""
    out = []
    for size in p.sizes:
        for res in p.resolutions:
            out += _size_cells(p, size, res)
    return out


def _base(p: Plan, size: str, res: int) -> dict:
    folder = p.work / "folders" / folder_name(size, res, p.scale)
    return {"size": size, "res": res, "scale": p.scale, "work": str(p.work / "folders"), "folder": str(folder),
            "taesd": str(p.work / "folders" / f"taesd-s{p.scale}"), "threads": p.threads, "budget": p.budget,
            "samples": p.samples, "check_steps": p.check_steps}


def _size_cells(p: Plan, size: str, res: int) -> list[Cell]:
    tag, base = f"{size}@{res}", _base(p, size, res)
    build = Cell(f"{tag}/build", {**base, "kind": "build"})
    out = [build, *_convert_cells(p, tag, base, build.key)]
    out += _call_cells(p, tag, base, build.key)
    out += _image_cells(p, tag, base, build.key)
    return out


def _art(p: Plan, tag: str, backend: str, precision: str, decoder: str) -> str:
    return str(p.work / "artifacts" / tag.replace("@", "-") / f"{backend}-{precision}-{decoder}")


def _convert_key(tag: str, backend: str, precision: str, decoder: str) -> str:
    return f"{tag}/convert/{backend}/{precision}/{decoder}"


def _convert_cells(p: Plan, tag: str, base: dict, build: str) -> list[Cell]:
    out = []
    for backend in p.backends:
        for precision in p.precisions:
            for decoder in p.decoders:
                spec = {**base, "kind": "convert", "backend": backend, "precision": precision, "decoder": decoder,
                        "art": _art(p, tag, backend, precision, decoder),
                        "reuse": _art(p, tag, backend, precision, "vae") if decoder == "taesd" else None}
                out.append(Cell(_convert_key(tag, backend, precision, decoder), spec, needs=(build,),
                                reason=unsupported(backend, precision)))
    if "optimum" in p.peers:
        for precision in p.precisions:
            spec = {**base, "kind": "convert", "backend": "optimum", "precision": precision, "decoder": "vae",
                    "art": _art(p, tag, "optimum", precision, "vae")}
            out.append(Cell(_convert_key(tag, "optimum", precision, "vae"), spec, env="optimum", needs=(build,)))
    return out


def unsupported(backend: str, precision: str) -> str | None:
    """Why `backend` cannot build `precision` (None when it can), from edgediff's backend registry."""
    if backend == "optimum":
        return None if precision in ("fp32", "int8") else f"optimum peer: fp32 and hybrid int8 only, not {precision}"
    from edgediff.converters import base

    known = base.get(backend).precisions
    return None if precision in known else f"{backend} has no {precision} (its precisions: {', '.join(known)})"


def _runs(p: Plan) -> list[tuple[str, str]]:
    """(backend, precision) pairs timed: the torch baselines at fp32, then each converter at each precision."""
    runs = [(b, "fp32") for b in ("eager", "compile") if b == "eager" or b in p.peers]
    runs += [(b, q) for b in p.backends for q in p.precisions]
    return runs + ([("optimum", q) for q in p.precisions] if "optimum" in p.peers else [])


def _needs_reason(tag: str, backend: str, precision: str, decoder: str, build: str):
    """(needs, reason) of a call or image cell on `backend`."""
    if backend in ("eager", "compile"):
        return (build,), None
    if backend == "optimum" and decoder == "taesd":
        return (), OPTIMUM_TAESD
    reason = unsupported(backend, precision) or NOT_HERE.get(backend)
    return (build, _convert_key(tag, backend, precision, decoder)), reason


def _call_cells(p: Plan, tag: str, base: dict, build: str) -> list[Cell]:
    out = []
    for component in COMPONENTS:
        decoder = DECODER_OF[component]
        if decoder not in p.decoders:
            continue
        for backend, precision in _runs(p):
            needs, reason = _needs_reason(tag, backend, precision, decoder, build)
            spec = {**base, "kind": "call", "backend": backend, "precision": precision, "component": component,
                    "decoder": decoder, "art": _art(p, tag, backend, precision, decoder),
                    "out": str(p.work / "outputs" / tag.replace("@", "-") / component / f"{backend}-{precision}.npy")}
            out.append(Cell(f"{tag}/call/{backend}/{precision}/{component}", spec,
                            env="optimum" if backend == "optimum" else "main", needs=needs, reason=reason))
    return out


def _image_cells(p: Plan, tag: str, base: dict, build: str) -> list[Cell]:
    out = []
    for decoder in p.decoders:
        for backend, precision in _runs(p):
            needs, reason = _needs_reason(tag, backend, precision, decoder, build)
            for steps in p.steps:
                spec = {**base, "kind": "image", "backend": backend, "precision": precision, "decoder": decoder,
                        "steps": steps, "art": _art(p, tag, backend, precision, decoder)}
                out.append(Cell(f"{tag}/image/{backend}/{precision}/{decoder}/{steps}", spec,
                                env="optimum" if backend == "optimum" else "main", needs=needs, reason=reason))
    return out
