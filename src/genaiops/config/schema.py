"""The JSON Schemas of `experiment.yaml` and `deployment.yaml` (after `${env:}` resolution),
generated from their models; the loaders validate with exactly these (`schemagen.file_schema`)."""

from __future__ import annotations

from genaiops.config.deployment import DeploymentConfig
from genaiops.config.model import ExperimentConfig
from genaiops.config.schemagen import file_schema

EXPERIMENT_SCHEMA = file_schema(ExperimentConfig)
DEPLOYMENT_SCHEMA = file_schema(DeploymentConfig)
