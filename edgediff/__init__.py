"""edgediff: compact diffusion models for phones and laptops.

Train or bring a denoiser, compress and convert it (Core ML, ExecuTorch, OpenVINO), sample from it with one shared
few-step sampler on every runtime, and measure it on the device. Importing this package loads no backend runtime.
"""

__version__ = "0.1.0"
