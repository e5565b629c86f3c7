"""The models the gateway offers: listed by ``GET /v1/models``, enforced on requests."""

from __future__ import annotations

from collections.abc import Iterable

from airlock.context import Context
from airlock.errors import ValidationFailed

__all__ = ["ModelAllowList", "models_document"]


def models_document(models: Iterable[str], owner: str) -> dict[str, object]:
    """The OpenAI ``GET /v1/models`` answer for ``models``."""
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": 0, "owned_by": owner} for model in models],
    }


class ModelAllowList:
    """Validate stage: the request's ``model`` must be one the configuration lists.

    Keeps clients from running up costs on models nobody chose (and from probing
    which models the provider key can reach).
    """

    def __init__(self, models: Iterable[str]) -> None:
        self.models = frozenset(models)

    def __repr__(self) -> str:
        return f"<ModelAllowList models={sorted(self.models)!r}>"

    async def __call__(self, ctx: Context) -> None:
        document = ctx.json
        model = document.get("model") if isinstance(document, dict) else None
        if not isinstance(model, str):
            rule = "required"
        elif model in self.models:
            return
        else:
            rule = "allowed"
        raise ValidationFailed(
            "This gateway does not offer the requested model; GET /v1/models lists the ones it does.",
            extensions={"errors": [{"path": "model", "rule": rule}]},
        )
