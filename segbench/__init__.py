"""segbench: measures how fast PyTorch trains mmsegmentation models."""

__version__ = "0.1.0"
