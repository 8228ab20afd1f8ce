"""Input validation for REST bodies and Socket.IO payloads: pydantic in, one clear error out.

Also the text types for what one user types and others read (:data:`Name`, :data:`Prose`).
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, StringConstraints, ValidationError

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


# Bidirectional overrides and isolates, which make a name read differently from its letters.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def _text_problem(value: str, multiline: bool) -> str | None:
    for char in value:
        if char in "\n\t" and multiline:
            continue
        if char in _BIDI_CONTROLS:
            return "must not contain direction-override characters"
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return "must not contain control or invisible characters"
    return None


def plain_name(value: str) -> str:
    """A name shown to other people (a display name, a channel name, a label): one line of
    visible text, no markup, so that no page can be spoofed with it."""
    value = unicodedata.normalize("NFC", value)
    problem = _text_problem(value, multiline=False)
    if problem is None and ("<" in value or ">" in value):
        problem = "must not contain < or >"
    if problem:
        raise ValueError(problem)
    return value


def plain_prose(value: str) -> str:
    """Free text shown to other people (a description): lines of visible text."""
    value = unicodedata.normalize("NFC", value)
    problem = _text_problem(value, multiline=True)
    if problem:
        raise ValueError(problem)
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=80),
    AfterValidator(plain_name),
]
Prose = Annotated[str, StringConstraints(max_length=2000), AfterValidator(plain_prose)]
