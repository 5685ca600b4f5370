"""Generate images from any Runner with the shared sampler, and save them as a labelled grid or an array."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .denoiser import Preconditioning, Runner, make_denoiser
from .errors import InputError
from .guidance import classifier_free_guidance
from .sampling import check_sigmas, get_sampler, sample


@dataclass(frozen=True)
class Request:
    """What to draw: n images, seeded; label None cycles 0..classes-1 (one row per class in the grid)."""

    n: int = 100
    seed: int = 0
    sampler: str = "dpmpp_2m"
    steps: int = 10
    guidance: float | None = None  # None: the model's recommended scale
    label: int | None = None
    batch_size: int = 250
    sigmas: tuple[float, ...] | None = None  # None: the sampler's formula (or the model's tuned schedule)

    def __post_init__(self):
        if self.n < 1 or self.steps < 1 or self.batch_size < 1:
            raise InputError(f"n, steps and batch_size must be >= 1, got {self.n}, {self.steps}, {self.batch_size}")
        get_sampler(self.sampler)
        if self.sigmas is not None:
            object.__setattr__(self, "sigmas", tuple(check_sigmas(self.sigmas, self.steps)))
        if self.guidance is not None and not self.guidance >= 0:
            raise InputError(f"guidance must be >= 0, got {self.guidance}")
        from . import schema

        schema.check_fields("sampler_defaults", self)


def labels_for(req: Request, num_classes: int) -> np.ndarray | None:
    if num_classes == 0:
        if req.label is not None:
            raise InputError("this model is unconditional: --label is not accepted")
        return None
    if req.label is not None and not 0 <= req.label < num_classes:
        raise InputError(f"label {req.label} is out of range; expected 0..{num_classes - 1}")
    if req.label is not None:
        return np.full(req.n, req.label, dtype=np.int64)
    per_row = max(1, round(req.n / num_classes))
    return (np.arange(req.n) // per_row % num_classes).astype(np.int64)


def generate(runner: Runner, precond: Preconditioning, shape: tuple[int, int, int], req: Request, *,
             num_classes: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw req.n images of `shape` (C, H, W); one seeded numpy Generator makes them identical on every runtime."""
    labels = labels_for(req, num_classes)
    rng = np.random.default_rng(req.seed)
    chunks = range(0, req.n, req.batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"sample {req.sampler}×{req.steps}", unit="batch")
    out = []
    for start in chunks:
        lab = labels[start:start + req.batch_size] if labels is not None else None
        b = len(lab) if lab is not None else min(req.batch_size, req.n - start)
        if getattr(runner, "takes_guidance", False):  # guidance is an input: one call per step
            w = np.full(b, 1.0 if req.guidance is None else req.guidance, np.float32)
            cond = make_denoiser(runner, precond, label=lab, w=w)
        else:
            cond = make_denoiser(runner, precond, label=lab)
        if lab is not None and req.guidance not in (None, 1.0) and not getattr(runner, "takes_guidance", False):
            uncond = make_denoiser(runner, precond, label=np.full_like(lab, num_classes))
            cond = classifier_free_guidance(cond, uncond, req.guidance)
        out.append(sample(cond, (b, *shape), sampler=req.sampler, steps=req.steps, rng=rng,
                          sigma_min=precond.sigma_min, sigma_max=precond.sigma_max, sigmas=req.sigmas))
    return np.concatenate(out).astype(np.float32), labels


def save(path: Path, images: np.ndarray, labels: np.ndarray | None) -> Path:
    """`.npy`: the raw float32 array (+ `<name>.labels.npy`); `.png`: a grid, one row per label if labelled."""
    from .checkpoint import atomic_path

    path = Path(path)
    if path.suffix not in (".npy", ".png"):
        raise InputError(f"output {path} must end in .npy or .png")
    with atomic_path(path) as tmp:
        if path.suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, images)
        else:
            _save_grid(tmp, images)
    if path.suffix == ".npy" and labels is not None:
        with atomic_path(path.with_suffix(".labels.npy")) as tmp, open(tmp, "wb") as f:
            np.save(f, labels)
    return path


def _save_grid(file: Path, images: np.ndarray, *, scale: int = 2) -> None:
    from PIL import Image

    n, c, h, w = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
    for i, img in enumerate(np.clip((images + 1) / 2, 0, 1)):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = img.transpose(1, 2, 0)
    pixels = (grid * 255).round().astype(np.uint8)
    im = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
    im.resize((im.width * scale, im.height * scale), Image.NEAREST).save(file, format="PNG")


def from_model(model, *, backend: str = "auto", request: Request, progress: bool = False,
               runtime_options: dict | None = None):
    """Generate `request` from a model dir (on `backend`) or an artifact dir (on its own backend).

    Guidance defaults to the model's recommendation. Static-batch artifacts get the same chunks as eager, so one
    seed gives the same images on every runtime.
    """
    runner, precond, num_classes, shape, defaults = open_runner(model, backend, runtime_options or {})
    return generate(runner, precond, shape, with_defaults(request, defaults), num_classes=num_classes,
                    progress=progress)


def with_defaults(request: Request, defaults: dict) -> Request:
    """Fill what `request` leaves open from a model's sampler defaults: the guidance scale, and the model's tuned
    σ schedule when the request uses the recommended sampler and step count."""
    import dataclasses

    changes = {}
    if request.guidance is None:
        changes["guidance"] = float(defaults.get("guidance", 1.0))
    if (request.sigmas is None and defaults.get("sigmas") is not None
            and (request.sampler, request.steps) == (defaults.get("sampler"), defaults.get("steps"))):
        changes["sigmas"] = tuple(defaults["sigmas"])
    return dataclasses.replace(request, **changes) if changes else request


def recommended(defaults: dict, **overrides) -> Request:
    """The Request a model recommends (sampler, steps, guidance, tuned σ) with `overrides` (n, seed, batch_size)."""
    keep = {k: defaults[k] for k in ("sampler", "steps", "guidance", "sigmas") if defaults.get(k) is not None}
    return Request(**{**keep, **overrides})


def open_runner(model, backend: str, options: dict):
    """(runner, precond, num_classes, (C, H, W), sampler defaults) for a model dir or an artifact dir."""
    from pathlib import Path

    from . import artifact, checkpoint
    from .converters import get

    if backend != "auto":
        get(backend)  # an unknown name fails here, naming the known ones
    if (Path(model) / artifact.ARTIFACT_FILE).is_file():
        art = artifact.read(model)
        if backend not in ("auto", art.backend):
            raise InputError(f"{model} is a {art.backend} artifact; use --backend {art.backend} or auto")
        shape = art.spec["x"][0]
        runner = static_batch(get(art.backend).load(art, **options), shape[0])
        return runner, Preconditioning.from_dict(art.precond), art.num_classes, tuple(shape[1:]), art.sampler_defaults
    md = checkpoint.load(model)
    if backend not in ("auto", "eager"):
        raise InputError(f"{model} is a model directory: sample it with --backend eager, or convert it first "
                         f"(`edgediff convert --backend {backend}`) and pass the artifact directory")
    c = md.unet
    return get("eager").load(md, **options), md.precond, c.num_classes, (c.in_channels, c.resolution,
                                                                         c.resolution), md.sampler_defaults


def static_batch(runner: Runner, batch: int) -> Runner:
    """Serve any batch size from a Runner compiled for exactly `batch` (split, pad the tail, crop)."""

    class Run:
        takes_guidance = getattr(runner, "takes_guidance", False)

        def __call__(self, x, t, label=None, *w):
            n = x.shape[0]
            if n == batch:
                return runner(x, t, label, *w)
            pad = -n % batch

            def padded(a):
                return None if a is None else (np.concatenate([a, np.repeat(a[-1:], pad, 0)]) if pad else a)

            parts = [padded(a) for a in (x, t, label, *w)]
            outs = [runner(*(None if a is None else a[i:i + batch] for a in parts)) for i in range(0, n + pad, batch)]
            return np.concatenate(outs)[:n]

    return Run()


def read(path: Path, labels: str | None = "auto") -> tuple[np.ndarray, np.ndarray | None]:
    """Read samples saved by `save` (.npy, never unpickled) and their labels ('auto' = the sidecar file)."""
    images = _read_array(Path(path))
    if labels in (None, "none"):
        return images, None
    side = Path(path).with_suffix(".labels.npy") if labels == "auto" else Path(labels)
    if labels == "auto" and not side.is_file():
        return images, None
    return images, _read_array(side)


def _read_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path} does not exist; expected a .npy file written by `edgediff sample`")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path} is not a readable .npy array ({e})") from None
