"""Checks every Runner applies before handing arrays to a runtime (native code never sees bad input)."""

from __future__ import annotations

import numpy as np

from edgediff.errors import InputError

MAX_BATCH = 65536
InputSpec = dict[str, tuple[tuple[int, ...], str]]  # {"x": ((1, 1, 32, 32), "float32"), "t": ((1,), "float32"), ...}


def check_runner_inputs(x, t, label, *, channels: int, resolution: int, num_classes: int,
                        batch: int | None = None,
                        allow_nonfinite: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and normalise (x float32 [B,C,H,W], t float32 [B], label int [B] | None); return them.

    `batch` is the artifact's static batch size (None: any B from 1 to MAX_BATCH). NaN or Inf in x or t is refused
    unless `allow_nonfinite` (for callers probing how a runtime propagates them); labels must lie in
    0..num_classes, where num_classes means "unconditional" (classifier-free guidance's null label).
    """
    x, t = _array(x, "x"), _array(t, "t")
    want = (batch if batch is not None else "B", channels, resolution, resolution)
    if x.ndim != 4 or x.shape[1:] != want[1:] or (batch is not None and x.shape[0] != batch):
        raise InputError(f"x has shape {x.shape}; expected {want}")
    if not 1 <= x.shape[0] <= MAX_BATCH:
        raise InputError(f"x holds a batch of {x.shape[0]} images; expected 1 to {MAX_BATCH}")
    if x.dtype != np.float32 or t.dtype != np.float32:
        raise InputError(f"x and t must be float32, got {x.dtype} and {t.dtype}")
    if t.shape != (x.shape[0],):
        raise InputError(f"t has shape {t.shape}; expected ({x.shape[0]},), one noise level per image")
    if not allow_nonfinite and not (np.isfinite(x).all() and np.isfinite(t).all()):
        raise InputError("x or t contains NaN or Inf; expected finite values")
    if label is not None:
        label = _array(label, "label")
        if label.shape != (x.shape[0],) or not np.issubdtype(label.dtype, np.integer):
            raise InputError(f"label must be integers of shape ({x.shape[0]},), got {label.dtype} {label.shape}")
        if num_classes == 0:
            raise InputError("this model is unconditional: label must be None")
        if label.min() < 0 or label.max() > num_classes:
            raise InputError(f"labels must lie in 0..{num_classes} ({num_classes} = unconditional); "
                             f"got {label.min()}..{label.max()}")
    return np.ascontiguousarray(x), np.ascontiguousarray(t), label


def _array(value, name: str) -> np.ndarray:
    """np.asarray that turns ragged lists, strings and odd objects into an InputError."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise InputError(f"{name} is not an array ({e}); expected a numpy array") from None
    if arr.dtype.hasobject:
        raise InputError(f"{name} has dtype object; expected a numeric numpy array")
    return arr


def check_guidance(w, batch: int) -> np.ndarray:
    """Guidance scales for a guidance-embedding model: float32 [batch], finite, >= 0 (None = 1, no guidance)."""
    if w is None:
        return np.ones(batch, np.float32)
    w = np.asarray(w)
    if w.shape != (batch,) or not np.issubdtype(w.dtype, np.floating):
        raise InputError(f"w must be floats of shape ({batch},), one guidance scale per image; got {w.dtype} {w.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise InputError("w (guidance scale) must be finite and >= 0")
    return np.ascontiguousarray(w, dtype=np.float32)


class SpecRunner:
    """Base of the compiled-artifact Runners: inputs are checked against the static spec (shape, dtype, finite,
    label range) before `_run(inputs)` hands them, in spec order, to the native runtime."""

    spec: InputSpec
    num_classes: int
    threads: int | None = None  # the thread count the runtime reports it uses (None: it cannot say)

    @property
    def takes_guidance(self) -> bool:
        """True for guidance-embedding students: pass w instead of a second, unconditional call."""
        return "w" in self.spec

    def __call__(self, x: np.ndarray, t: np.ndarray | None = None, label: np.ndarray | None = None,
                 w: np.ndarray | None = None) -> np.ndarray:
        if component_of(self.spec) is not None:  # a pipeline component: its own inputs, in spec order
            given = [a for a in (x, t, label, w) if a is not None]
            return self._run(check_component_inputs(self.spec, given))
        return self._run(prepare_inputs(self.spec, self.num_classes, x, t, label, w))

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


def prepare_inputs(spec: InputSpec, num_classes: int, x, t, label, w=None, *,
                   allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
    """Check runner inputs against the static spec; return them in spec order and dtypes (label None = null,
    w None = guidance 1)."""
    shape = spec["x"][0]
    x, t, label = check_runner_inputs(x, t, label, channels=shape[1], resolution=shape[2],
                                      num_classes=num_classes, batch=shape[0], allow_nonfinite=allow_nonfinite)
    if x.shape != tuple(shape):
        raise InputError(f"x has shape {x.shape}; expected {tuple(shape)}")
    if "label" not in spec:
        if label is not None:
            raise InputError("this artifact is unconditional: label must be None")
        return {"x": x, "t": t}
    if label is None:
        label = np.full(shape[0], num_classes)
    out = {"x": x, "t": t, "label": np.ascontiguousarray(label.astype(spec["label"][1]))}
    if "w" in spec:
        out["w"] = check_guidance(w, shape[0])
    elif w is not None:
        raise InputError("this artifact takes no guidance input w; guide it with two calls (classifier-free guidance)")
    return out


# Components of a text-to-image pipeline: their inputs by name, in order (each is its own artifact).
DENOISER_INPUTS = (("x", "t"), ("x", "t", "label"), ("x", "t", "label", "w"))
COMPONENT_INPUTS = {("ids",): "text_encoder", ("x", "t", "context"): "unet", ("x", "t", "context", "w"): "unet",
                    ("z",): "vae_decoder"}
COMPONENT_DTYPES = {"ids": "int32", "x": "float32", "t": "float32", "context": "float32", "w": "float32",
                    "z": "float32"}


def component_of(spec) -> str | None:
    """'text_encoder' | 'unet' | 'vae_decoder' for a pipeline component's spec, None for a denoiser's."""
    return COMPONENT_INPUTS.get(tuple(spec))


def check_component_inputs(spec: InputSpec, arrays) -> dict[str, np.ndarray]:
    """Arrays in spec order, each of exactly its static shape and dtype and finite; returned by name."""
    names = list(spec)
    if len(arrays) != len(names):
        raise InputError(f"got {len(arrays)} inputs; expected {len(names)} ({', '.join(names)})")
    out = {}
    for name, value in zip(names, arrays, strict=True):
        shape, dtype = spec[name]
        a = _array(value, name)
        if a.shape != tuple(shape):
            raise InputError(f"{name} has shape {a.shape}; expected {tuple(shape)}")
        if dtype == "int32" and np.issubdtype(a.dtype, np.integer):
            a = a.astype(np.int32, copy=False)
        elif a.dtype != np.dtype(dtype):
            raise InputError(f"{name} has dtype {a.dtype}; expected {dtype}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise InputError(f"{name} contains NaN or Inf; expected finite values")
        out[name] = np.ascontiguousarray(a)
    return out


def calibration_inputs(spec: InputSpec, num_classes: int, x, t, label, w=None) -> dict[str, np.ndarray]:
    """One calibration batch in spec order: a denoiser's (x, t, label, w), or a text-to-image UNet's, whose
    calibration carries the text context in the label slot."""
    if component_of(spec) == "unet":
        return check_component_inputs(spec, [x, t, label] + ([w] if "w" in spec else []))
    return prepare_inputs(spec, num_classes, x, t, label if num_classes else None, w if "w" in spec else None)
