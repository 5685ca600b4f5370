"""Tiny random-weight Stable Diffusion-family pipelines built from config dicts and saved with `save_pretrained`
(no download): a real CLIP BPE tokenizer from the shipped merge list, a CLIP text encoder, a cross-attention UNet,
an AutoencoderKL. Shared by the text-to-image tests and the hostile-input suite."""

from __future__ import annotations

from pathlib import Path

import torch

from edgediff.format.clip_tokenizer import write_clip_tokenizer

LATENT = 8  # latent side; the two-level VAE doubles it (16×16 images)


def sd_pipeline(path: Path, *, prediction: str = "epsilon", scheduler: str = "DDIMScheduler", vae: str = "kl",
                lcm: bool = False) -> Path:
    """An SD 1.x-style StableDiffusionPipeline folder (SD 2.x-style with prediction='v_prediction'; TAESD decoder
    with vae='tiny'; a LatentConsistencyModelPipeline with an LCMScheduler and a guidance-embedding UNet with
    lcm=True)."""
    import diffusers
    import transformers

    torch.manual_seed(0)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        projection_dim=32)).eval()
    unet = diffusers.UNet2DConditionModel(
        sample_size=LATENT, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8, time_cond_proj_dim=16 if lcm else None)
    vae = tiny_vae() if vae == "tiny" else diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    config = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type=prediction)
    if not lcm:
        config.update(steps_offset=1)
    if scheduler == "DDIMScheduler" and not lcm:
        config.update(clip_sample=False, set_alpha_to_one=False)
    sched = getattr(diffusers, "LCMScheduler" if lcm else scheduler)(**config)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(write_clip_tokenizer(path.parent / f"{path.name}-tok"))
    cls = diffusers.LatentConsistencyModelPipeline if lcm else diffusers.StableDiffusionPipeline
    pipe = cls(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=sched, safety_checker=None,
               feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path


def tiny_vae():
    """A two-block AutoencoderTiny (TAESD-style): latents 8×8 → 16×16 images, like the AutoencoderKL above."""
    import diffusers

    torch.manual_seed(1)
    return diffusers.AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                                     num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1))
