"""The OpenAPI document, completed where FastAPI cannot say it from the models.

- Problem responses are filed under ``application/problem+json`` (FastAPI puts
  every response model under ``application/json``).
- ``MemoryCreate`` takes either ``text`` or ``messages``: a ``oneOf`` says so, so
  that generated clients and schemathesis know it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from shared.errors import PROBLEM_MEDIA_TYPE

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _problems_as_problem_json(schema: dict[str, Any]) -> None:
    for item in schema.get("paths", {}).values():
        for op in item.values():
            for resp in op.get("responses", {}).values():
                content = resp.get("content", {})
                if content.get("application/json", {}).get("schema") == _PROBLEM_REF:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")


def _text_or_messages(schema: dict[str, Any]) -> None:
    create = schema.get("components", {}).get("schemas", {}).get("MemoryCreate")
    if create is not None:
        create["oneOf"] = [{"required": ["text"]}, {"required": ["messages"]}]


def custom_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """An ``app.openapi`` that completes FastAPI's document (see module docstring)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _problems_as_problem_json(schema)
            _text_or_messages(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
