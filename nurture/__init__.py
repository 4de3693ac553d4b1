"""nurture: consent-first email nurture sequences, sent on time and exactly once."""

__version__ = "0.1.0"
