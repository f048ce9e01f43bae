"""JSON Schema generated from the config models, shaped so that jsonschema's errors stay precise.

`config.layered.schema_problems` turns each jsonschema error into a located, fixable problem;
pydantic's default schema would blur some of them, so the generator changes a few things.
"""

from __future__ import annotations

from functools import cache

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

# jsonschema reports an object's errors in the order of its keywords: the most basic one first
CHECKING_ORDER = ("type", "required", "propertyNames", "additionalProperties", "properties")


def _in_checking_order(json_schema: dict) -> dict:
    first = {key: json_schema[key] for key in CHECKING_ORDER if key in json_schema}
    return {**first, **{k: v for k, v in json_schema.items() if k not in first}}


class FileSchema(GenerateJsonSchema):
    """Pydantic's JSON Schema, except that:

    - an optional field is just its type, not `anyOf [type, null]` (`null` is never a valid
      value in the file, and an anyOf error says only "not valid under any of the given schemas");
    - a Literal is a bare `enum`, so a wrong value is one problem ("'gpt' is not allowed, use one
      of ...") instead of an `enum` and a `type` problem;
    - a dict whose keys have a pattern checks every key with `propertyNames` (pydantic's
      `patternProperties` lets a key that does not match through unchecked);
    - fields have no titles and no `null` defaults (noise for a person reading the schema);
    - an object's keywords come in CHECKING_ORDER, so its problems are listed in that order.
    """

    def generate(self, schema, mode="validation"):
        return {"$schema": self.schema_dialect, **super().generate(schema, mode)}

    def nullable_schema(self, schema):
        return self.generate_inner(schema["schema"])

    def literal_schema(self, schema):
        return {"enum": list(schema["expected"])}

    def dict_schema(self, schema):
        json_schema = super().dict_schema(schema)
        patterns = json_schema.pop("patternProperties", None)
        if patterns:
            [(pattern, values)] = patterns.items()
            json_schema["propertyNames"] = {"pattern": pattern}
            json_schema["additionalProperties"] = values
        return json_schema

    def sort(self, value, parent_key=None):
        return value  # keep CHECKING_ORDER and the models' field order

    def model_schema(self, schema):
        return _in_checking_order(super().model_schema(schema))

    def typed_dict_schema(self, schema):
        return _in_checking_order(super().typed_dict_schema(schema))

    def default_schema(self, schema):
        json_schema = super().default_schema(schema)
        if "default" in json_schema and json_schema["default"] is None:
            del json_schema["default"]
        return json_schema

    def field_title_should_be_set(self, schema) -> bool:
        return False


@cache
def file_schema(model: type[BaseModel]) -> dict:
    """The JSON Schema of a config file format (shared: read it, never change it)."""
    return model.model_json_schema(schema_generator=FileSchema)
