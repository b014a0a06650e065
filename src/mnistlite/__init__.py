"""mnistlite: train tiny image classifiers under hard budgets, honestly and fast."""
__version__ = "0.1.0"
