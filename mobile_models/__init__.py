"""Shipped model directories (config.json + weights.safetensors + model card), installed as edgediff.mobile_models."""
