"""Making and shrinking denoisers: the resumable training loop (torchrun/DDP), offline data, structural pruning,
consistency and trajectory distillation, and training checkpoints."""
