"""Evaluation metrics that need networks or statistics: EfficientNet-Lite0 features, FID and KID."""
