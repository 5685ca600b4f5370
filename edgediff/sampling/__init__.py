"""The host-side diffusion maths, numpy and torch alike: σ schedules, k-diffusion-style samplers, classifier-free
guidance, the Runner → Denoiser bridge, and drawing a seeded Request of images from any Runner."""
