"""JSON Schema of `configs/<use_case>/experiment.yaml` (after `${env:}` resolution)."""

from __future__ import annotations

NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
REL_PATH = {"type": "string", "minLength": 1}
MAPPINGS = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
POS_INT = {"type": "integer", "minimum": 1}

CONNECTION = {
    "type": "object",
    "required": ["name", "type", "api_base"],
    "additionalProperties": False,
    "properties": {
        "name": NAME,
        "type": {"enum": ["open_ai", "azure_open_ai"]},
        "api_base": {"type": "string", "minLength": 1},
        "api_key": {"type": "string"},
        "api_version": {"type": "string"},
        "organization": {"type": "string"},
        "auth_mode": {"enum": ["key", "meid_token"]},
        "model": {"type": "string"},
    },
}

DATASET = {
    "type": "object",
    "required": ["name", "source"],
    "additionalProperties": False,
    "properties": {
        "name": NAME,
        "source": REL_PATH,
        "description": {"type": "string"},
        "mappings": MAPPINGS,
    },
}

EVALUATOR_DATASET = {
    "type": "object",
    "required": ["name", "reference"],
    "additionalProperties": False,
    "properties": {
        "name": NAME,
        "reference": NAME,
        "source": REL_PATH,
        "description": {"type": "string"},
        "mappings": MAPPINGS,
    },
}

EVALUATOR = {
    "type": "object",
    "required": ["name", "datasets"],
    "additionalProperties": False,
    "properties": {
        "name": NAME,
        "description": {"type": "string"},
        "flow": REL_PATH,
        "code": {"type": "string", "pattern": r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$"},
        "aggregate": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "datasets": {"type": "array", "minItems": 1, "items": EVALUATOR_DATASET},
    },
    "oneOf": [{"required": ["flow"]}, {"required": ["code"]}],
}

VARIANT = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {"name": NAME, "description": {"type": "string"}, "init": {"type": "object"}},
}

GATE = {
    "type": "object",
    "required": ["metric", "op", "threshold"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "metric": {"type": "string", "minLength": 1},
        "op": {"enum": [">=", ">", "<=", "<", "=="]},
        "threshold": {"type": "number"},
        "type": {"enum": ["absolute", "regression"]},
        "evaluator": NAME,
        "dataset": NAME,
        "min_samples": POS_INT,
        "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "description": {"type": "string"},
    },
}

EVALUATION = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "primary_metric": {"type": "string", "minLength": 1},  # ranks the leaderboard
        "higher_is_better": {"type": "boolean"},
        "evaluator": NAME,  # where primary_metric comes from when several evaluators report it
        "dataset": NAME,
        "min_samples": POS_INT,  # default for gates without their own
        "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    },
}

RUNTIME = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "backend": {"enum": ["local", "azure"]},
        "worker_count": POS_INT,
        "max_parallel": POS_INT,
        "line_timeout_sec": POS_INT,
        "failed_line_tolerance": {"type": "number", "minimum": 0},
        "retries": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_attempts": POS_INT,
                "backoff_sec": {"type": "number", "minimum": 0},
            },
        },
    },
}

SIMULATOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "rules": REL_PATH,
        "latency_ms": {"type": "number", "minimum": 0},
        "port": {"type": "integer", "minimum": 0, "maximum": 65535},
    },
}

PRICE = {
    "type": "object",
    "required": ["prompt", "completion"],
    "additionalProperties": False,
    "properties": {"prompt": {"type": "number", "minimum": 0},
                   "completion": {"type": "number", "minimum": 0}},
}

REGISTRY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "backend": {"enum": ["local", "azureml"]},
        "subscription_id": {"type": "string"},
        "resource_group": {"type": "string"},
        "workspace_name": {"type": "string"},
    },
}

EXPERIMENT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name", "flow", "datasets"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{1,40}$"},
        "description": {"type": "string"},
        "flow": REL_PATH,
        "connections": {"type": "array", "items": CONNECTION},
        "simulator": SIMULATOR,
        "datasets": {"type": "array", "minItems": 1, "items": DATASET},
        "evaluators": {"type": "array", "items": EVALUATOR},
        "variants": {"type": "array", "items": VARIANT},
        "runtime": RUNTIME,
        "prices": {"type": "object", "additionalProperties": PRICE},
        "registry": REGISTRY,
        "gates": {"type": "array", "items": GATE},
        "evaluation": EVALUATION,
    },
}
