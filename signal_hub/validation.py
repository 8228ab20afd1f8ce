"""Input validation for REST bodies and Socket.IO payloads: pydantic in, one clear error out."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from signal_hub.errors import ValidationFailed

ModelT = TypeVar("ModelT", bound=BaseModel)


def describe_validation_error(exc: ValidationError) -> str:
    """One readable sentence naming each offending field."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "Invalid input: " + "; ".join(parts) + "."


def validate(model: type[ModelT], payload: Any, shape: str) -> ModelT:
    """``payload`` as ``model``, or :class:`ValidationFailed`; ``shape`` describes an object."""
    if not isinstance(payload, dict):
        raise ValidationFailed(f"Expected a JSON object: {shape}.")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation_error(exc)) from None
