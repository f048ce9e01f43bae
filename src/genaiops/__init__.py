"""genaiops: take versioned promptflow flows through init, experiment, evaluate and deploy."""

__version__ = "0.1.0"
