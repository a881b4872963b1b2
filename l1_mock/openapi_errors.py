"""The OpenAPI documents of Rampart's HTTP services say what they answer: every refusal is
`{"error": {"code", "message", "params"?}}`; a request that does not validate is a 400 with code
`malformed` (each service's RequestValidationError handler), where FastAPI documents its default
422 "Validation Error"; a 422 is a well-formed request the rules refuse (insufficient_margin,
a game move out of turn, ...), which only a POST can be. Shared by the base layer's and the
sequencer's apps.
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
    """`schema` (an OpenAPI document) with FastAPI's 422 Validation Error replaced by the 400
    Error answered, and a POST's 422 documented as the refusal it is."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"] = ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = {"description": "Malformed: the request does not validate (code malformed, "
                                                   "params naming each field at fault)", "content": error}
            if method == "post":
                responses["422"] = {"description": "Refused by the rules: the code names why", "content": error}
    return schema
