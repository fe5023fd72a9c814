"""mtrl-align: multi-task reinforcement learning with pluggable gradient aggregators."""

__version__ = "0.1.0"
