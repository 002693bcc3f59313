"""nlparena: compare NLP architectures on the same synthetic tasks."""

__version__ = "0.1.0"
