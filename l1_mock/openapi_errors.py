"""The OpenAPI documents of Rampart's HTTP services say what they answer: every refusal is
`{"error": {"code", "message", "params"?}}`, and a request that does not validate is a 400 with
code `malformed`, never FastAPI's default 422 (each service's RequestValidationError handler).
Shared by the base layer's and the sequencer's apps.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error", "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string", "description": "machine-readable: malformed, unknown_order, ..."},
        "message": {"type": "string"},
        "params": {"type": "array", "items": {"type": "string"},
                   "description": "the request parameters at fault, when a request did not validate"}}}},
}


def errors_as_answered(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (an OpenAPI document) with each 422 response replaced by the 400 Error answered."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"] = ERROR_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = {"description": "Refused: malformed input",
                                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return schema
