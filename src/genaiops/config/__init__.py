"""Use-case configuration: `configs/<use_case>/experiment.yaml` plus `experiment.<env>.yaml` overlays."""

from genaiops.config.loader import list_use_cases, load_experiment, overlay_path
from genaiops.config.model import ExperimentConfig

__all__ = ["ExperimentConfig", "list_use_cases", "load_experiment", "overlay_path"]
