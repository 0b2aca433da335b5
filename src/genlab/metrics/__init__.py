"""Evaluation metrics: feature extractors (Inception, in-project classifier), reference statistics, FID glue.

torch-fidelity computes `genlab eval`'s FID, IS, KID and precision/recall; torchmetrics' FID runs during
training. Both see the same extractor object, fed the same uint8 images, so their numbers agree.
"""
