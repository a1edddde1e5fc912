"""clinann: physicians refine LLM pre-annotations of clinical notes; clinann measures the cost."""

__version__ = "0.1.0"
