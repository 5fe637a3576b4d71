"""payattn: the attention mechanisms of "You Need to Pay Better Attention", from PyTorch to the edge."""

__version__ = "0.1.0"
