"""The ``openai-embeddings`` preset: ``POST /v1/embeddings``."""

from __future__ import annotations

from typing import Any

from airlock.validation.openai.common import model, positive, string

__all__ = ["embeddings_schema"]


def embeddings_schema(
    *,
    max_inputs: int = 2048,
    max_input_chars: int = 32_768,
    max_dimensions: int = 4096,
) -> dict[str, Any]:
    """``POST /v1/embeddings``: one text, a list of texts, or token arrays."""
    max_inputs = positive("max_inputs", max_inputs)
    max_chars = positive("max_input_chars", max_input_chars)
    max_dimensions = positive("max_dimensions", max_dimensions)
    token = {"type": "int", "min": 0}
    return {
        "model": model(),
        "input": {
            "type": ["string", "list"],
            "required": True,
            "empty": False,
            "maxchars": max_chars,
            "maxitems": max_inputs,
            # Each item: a text, a token id, or an array of token ids.
            "schema": {
                "type": ["string", "int", "list"],
                "empty": False,
                "maxlength": max_chars,
                "min": 0,
                "schema": token,
            },
        },
        "dimensions": {"type": "int", "min": 1, "max": max_dimensions},
        "encoding_format": {"type": "string", "allowed": ["float", "base64"]},
        "user": string(),
    }
