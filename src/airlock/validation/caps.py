"""Structure caps: how deep, how many, how long, checked before any schema work.

A schema is only as safe as the cost of checking it. A document with a million
array items or a string of a million characters is refused here, by a loop that
stops at the first value over a cap (no recursion: a deep document cannot blow
the stack), so no later stage ever walks it.

Most bodies never need the walk: a JSON text of ``n`` bytes holds at most ``n``
characters in any string, at most as many containers nested as it has ``[`` and
``{``, and at most (commas + brackets) keys and items. When those upper bounds,
counted on the raw bytes at C speed, are already within the caps, the walk is
skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airlock.errors import ConfigurationError, JSONTooDeep, JSONTooLarge

if TYPE_CHECKING:
    from airlock.context import Context

__all__ = ["StructureCaps"]


@dataclass(frozen=True)
class StructureCaps:
    """Per-route limits on the shape of a JSON document.

    Usable alone as a stage (``Policy(validate=StructureCaps(max_depth=8))``) and
    run first by :class:`~airlock.validation.Validate` (its ``caps=`` option).

    :param max_depth: containers nested inside each other (the root is depth 1);
        deeper gets ``400 json_too_deep``, like the parse stage's own cap.
    :param max_array_items: items in any one array.
    :param max_total_items: keys and items in the whole document.
    :param max_string_length: characters in any one string, keys included.

    Over the last three gets ``422 json_too_large`` with the cap's name and value.
    """

    max_depth: int = 32
    max_array_items: int = 10_000
    max_total_items: int = 100_000
    max_string_length: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_array_items", "max_total_items", "max_string_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"StructureCaps.{name} must be a positive integer")

    async def __call__(self, ctx: Context) -> None:
        if ctx.json is None:
            return
        # The raw body bounds the document only while no stage has changed it.
        self.check(ctx.json, None if ctx.modified else ctx.body)

    def within_bounds(self, body: bytes) -> bool:
        """Whether ``body`` alone proves every cap holds (no walk needed)."""
        if len(body) <= self.max_string_length:
            brackets = body.count(b"[") + body.count(b"{")
            if brackets <= self.max_depth:
                nodes = brackets + body.count(b",")
                if nodes <= self.max_array_items and nodes <= self.max_total_items:
                    return True
        return False

    def check(self, document: Any, body: bytes | None = None) -> None:
        """Raise ``JSONTooDeep``/``JSONTooLarge`` when ``document`` exceeds a cap."""
        if body is not None and self.within_bounds(body):
            return
        max_depth = self.max_depth
        max_items = self.max_array_items
        max_total = self.max_total_items
        max_string = self.max_string_length
        if isinstance(document, str) and len(document) > max_string:
            raise self._too_large("max_string_length", max_string)
        total = 0
        stack: list[tuple[Any, int]] = [(document, 1)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, dict):
                children: Any = node.values()
                for key in node:
                    if len(key) > max_string:
                        raise self._too_large("max_string_length", max_string)
            elif isinstance(node, list):
                children = node
                if len(node) > max_items:
                    raise self._too_large("max_array_items", max_items)
            else:
                continue
            if depth > max_depth:
                raise JSONTooDeep(extensions={"max_depth": max_depth})
            total += len(node)
            if total > max_total:
                raise self._too_large("max_total_items", max_total)
            for child in children:
                if isinstance(child, str):
                    if len(child) > max_string:
                        raise self._too_large("max_string_length", max_string)
                elif isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))

    @staticmethod
    def _too_large(cap: str, value: int) -> JSONTooLarge:
        return JSONTooLarge(
            f"The request body exceeds this route's {cap} ({value}).",
            extensions={"cap": cap, "limit": value},
        )
