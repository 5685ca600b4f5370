"""Networks and their weights: the compact UNet family, model directories' safetensors, the eager Runner, and
the import of a user's diffusers UNet as an EDM network."""
