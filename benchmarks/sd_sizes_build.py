"""Random-weight Stable Diffusion-family folders for benchmarks/sd_sizes.py, built from the published component
configs in benchmarks/sd_configs/ (README.md there says where each came from).

`--scale S` divides every width (UNet/VAE/TAESD channels, CLIP hidden and MLP sizes, cross-attention width) by S and
keeps depth, vocabulary and token count, so a functional run is quick; S = 1 is the published architecture. Each
(size, resolution) becomes a diffusers StableDiffusionPipeline folder written by `save_pretrained` (tokenizer files
from the shipped CLIP merge list, as tests/sd_folders.py writes them) plus one TAESD (AutoencoderTiny) folder, and
`inputs.npz`: the fixed inputs every backend's per-call measurement shares (token ids of PROMPT, that prompt's eager
text embedding, seeded latents, the decoders' latents).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "sd_configs"
# Each folder carries its published scheduler (PNDM for SD 1.x). edgediff samples its step grid with
# DPM-Solver++(2M); per-image timings give diffusers and optimum-intel the same sampler (`same_sampler`), since PNDM
# makes N + 1 UNet calls for N steps (5 at 4 steps, 21 at 20) where DPM-Solver++(2M) makes N. sd21-base pairs
# the 2.1-base UNet with 2.1's v-prediction DDIM so the v path is exercised (sd_configs/README.md).
SIZES = {  # name: (unet, text encoder, vae, scheduler) files in sd_configs/
    "sd15": ("sd15_unet", "sd15_text_encoder", "sd15_vae", "sd15_scheduler"),
    "bk-sdm-tiny": ("bk_sdm_tiny_unet", "sd15_text_encoder", "sd15_vae", "sd15_scheduler"),
    "sd21-base": ("sd21_base_unet", "sd21_base_text_encoder", "sd21_base_vae", "sd21_scheduler_v"),
}
TAESD = "taesd"
PROMPT = "a photo of an astronaut riding a horse on mars"
GUIDANCE = {1: 1.0, 4: 1.0, 20: 7.5}  # per-image steps → guidance (20 steps with classifier-free guidance)
TIMESTEP = 500.0  # the UNet's timestep in the shared per-call inputs (mid-schedule)
COMPONENTS = ("text_encoder", "unet", "vae_decoder", "taesd_decoder")


def same_sampler(pipe) -> None:
    """Give a diffusers-style pipeline DPM-Solver++(2M) built from its own scheduler config, the sampler edgediff
    runs, so every runner's image costs the same number of UNet calls (Lu et al. 2022, DPM-Solver++)."""
    import diffusers

    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config,
                                                                       algorithm_type="dpmsolver++", solver_order=2)


def config(name: str) -> dict:
    """One published config dict from sd_configs/."""
    return json.loads((CONFIGS / f"{name}.json").read_text())


def _groups(groups: int, channels, scale: int) -> int:
    """GroupNorm groups at 1/scale width, dividing every channel count."""
    return math.gcd(max(1, groups // scale), *channels)


def scaled_unet(c: dict, scale: int, latent: int) -> dict:
    """A UNet2DConditionModel config at 1/scale width and `latent`² latents."""
    c = {**c, "sample_size": latent}
    if scale == 1:
        return c
    widths = [w // scale for w in c["block_out_channels"]]
    heads = c["attention_head_dim"]  # diffusers' SD naming: the number of heads per block
    heads = [math.gcd(h, w) for h, w in zip(heads, widths, strict=True)] if isinstance(heads, list) \
        else math.gcd(heads, *widths)
    return {**c, "block_out_channels": widths, "attention_head_dim": heads,
            "norm_num_groups": _groups(c["norm_num_groups"], widths, scale),
            "cross_attention_dim": c["cross_attention_dim"] // scale}


def scaled_vae(c: dict, scale: int, resolution: int) -> dict:
    """An AutoencoderKL config at 1/scale width and `resolution`² images."""
    c = {**c, "sample_size": resolution}
    if scale == 1:
        return c
    widths = [w // scale for w in c["block_out_channels"]]
    return {**c, "block_out_channels": widths, "norm_num_groups": _groups(c["norm_num_groups"], widths, scale)}


def scaled_taesd(c: dict, scale: int) -> dict:
    """An AutoencoderTiny config at 1/scale width."""
    keys = ("encoder_block_out_channels", "decoder_block_out_channels")
    return {**c, **{k: [max(1, w // scale) for w in c[k]] for k in keys}}


def scaled_text(c: dict, scale: int) -> dict:
    """A CLIPTextModel config at 1/scale width (same layers, vocabulary and 77 positions)."""
    if scale == 1:
        return dict(c)
    hidden = c["hidden_size"] // scale
    return {**c, "hidden_size": hidden, "intermediate_size": c["intermediate_size"] // scale,
            "num_attention_heads": math.gcd(c["num_attention_heads"], hidden),
            "projection_dim": max(1, c["projection_dim"] // scale)}


def folder_name(size: str, resolution: int, scale: int) -> str:
    return f"{size}-{resolution}-s{scale}"


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_components(size: str, resolution: int, scale: int, seed: int = 0) -> dict:
    """Seeded random-weight text encoder, UNet, VAE and scheduler of `size` (nothing saved yet)."""
    import diffusers
    import torch
    import transformers

    unet_f, text_f, vae_f, sched_f = SIZES[size]
    torch.manual_seed(seed)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig.from_dict(scaled_text(config(text_f), scale)))
    unet = diffusers.UNet2DConditionModel.from_config(scaled_unet(config(unet_f), scale, resolution // 8))
    vae = diffusers.AutoencoderKL.from_config(scaled_vae(config(vae_f), scale, resolution))
    sched_c = config(sched_f)
    scheduler = getattr(diffusers, sched_c["_class_name"]).from_config(sched_c)
    return {"text_encoder": text.float().eval(), "unet": unet.eval(), "vae": vae.eval(), "scheduler": scheduler}


def build_taesd(root: Path, scale: int, seed: int = 0) -> Path:
    """The TAESD decoder folder at 1/scale width (reused when present)."""
    import diffusers
    import torch

    path = root / f"{TAESD}-s{scale}"
    if not (path / "config.json").is_file():
        torch.manual_seed(seed + 1)
        diffusers.AutoencoderTiny.from_config(scaled_taesd(config(TAESD), scale)).save_pretrained(path)
    return path


def build(size: str, resolution: int, scale: int, root: Path, seed: int = 0) -> dict:
    """Write the pipeline folder, the TAESD folder and inputs.npz; return where they are and the parameter counts."""
    import diffusers

    from edgediff.format.clip_tokenizer import load_tokenizer, write_clip_tokenizer

    started, folder = time.perf_counter(), root / folder_name(size, resolution, scale)
    parts = build_components(size, resolution, scale, seed)
    tokenizer = load_tokenizer(write_clip_tokenizer(root / "clip-tokenizer"))
    pipe = diffusers.StableDiffusionPipeline(**parts, tokenizer=tokenizer, safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    published_text_layout(folder / "text_encoder")
    taesd = build_taesd(root, scale, seed)
    tiny = diffusers.AutoencoderTiny.from_pretrained(taesd, use_safetensors=True)
    write_inputs(folder, parts, tokenizer, tiny, seed)
    params = {"text_encoder": n_params(parts["text_encoder"]), "unet": n_params(parts["unet"]),
              "vae_decoder": n_params(parts["vae"].decoder) + n_params(parts["vae"].post_quant_conv),
              "taesd_decoder": n_params(tiny.decoder)}
    return {"folder": str(folder), "taesd": str(taesd), "params": params,
            "seconds": round(time.perf_counter() - started, 1)}


def published_text_layout(folder: Path) -> None:
    """Rewrite the text encoder's weights under the published `text_model.` key prefix (see sd_configs/README.md)."""
    # transformers 5.2x saves CLIPTextModel without the prefix; 5.5.4 (optimum-intel 2.2.0's pin) then loads nothing
    # and silently keeps a random init. Both read the published layout.
    from safetensors.torch import load_file, save_file

    files = sorted(folder.glob("model*.safetensors"))
    if len(files) != 1:
        raise RuntimeError(f"{folder}: expected one model.safetensors, found {[f.name for f in files]}")
    state = load_file(files[0])
    if not all(k.startswith("text_model.") for k in state):
        save_file({f"text_model.{k}": v for k, v in state.items()}, files[0], metadata={"format": "pt"})


def write_inputs(folder: Path, parts: dict, tokenizer, taesd, seed: int) -> None:
    """inputs.npz: the per-call inputs of every component (real token ids and text embedding, seeded latents)."""
    import numpy as np
    import torch

    ids = tokenizer([PROMPT], padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
    ids = np.asarray(ids.input_ids, dtype=np.int32)
    with torch.no_grad():
        context = parts["text_encoder"](torch.from_numpy(ids).long()).last_hidden_state.numpy()
    rng = np.random.default_rng(seed)
    latent = parts["unet"].config.sample_size
    x = rng.standard_normal((1, 4, latent, latent)).astype(np.float32)
    z = rng.standard_normal((1, 4, latent, latent)).astype(np.float32)
    kl = float(parts["vae"].config.scaling_factor)
    tiny = float(taesd.config.scaling_factor)
    np.savez(folder / "inputs.npz", ids=ids, x=x, t=np.array([TIMESTEP], np.float32), context=context,
             z_vae=z / kl, z_taesd=z / tiny)


def inputs(folder: Path, component: str) -> tuple:
    """The shared inputs of one component, in its call order."""
    import numpy as np

    d = np.load(Path(folder) / "inputs.npz", allow_pickle=False)
    return {"text_encoder": (d["ids"],), "unet": (d["x"], d["t"], d["context"]),
            "vae_decoder": (d["z_vae"],), "taesd_decoder": (d["z_taesd"],)}[component]
