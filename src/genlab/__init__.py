"""genlab: generative image models on PyTorch Lightning."""
__version__ = "0.1.0"
