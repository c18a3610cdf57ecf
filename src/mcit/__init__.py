"""mcit: continual instruction tuning of multimodal LLMs, measured."""

__version__ = "0.1.0"
