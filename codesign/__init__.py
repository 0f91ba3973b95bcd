"""codesign: train neural networks and the accelerator that runs them together."""

__version__ = "0.1.0"
