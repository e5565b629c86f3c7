"""Config sections that plug stages into the engine, one small module each.

A stage section reads its own TOML table (``parse``, at start-up, errors naming
the key) into a frozen settings object, and turns settings into
:class:`~airlock.Policy` fields holding stage objects (``build``). Sections run
in the order of :data:`STAGE_SECTIONS`; their stages land in the slots they
name, so the engine's fixed order (validate, sanitize, anonymize, budget) holds
whatever the file's order.

The gateway builds each section once per distinct settings object (and, for a
``route_specific`` section, once per route), so routes that do not override a
section share its stages: one limit storage, one audit chain.
"""

from __future__ import annotations

from typing import Any, Protocol

from airlock.gateway.sections.anonymize import ANONYMIZE
from airlock.gateway.sections.audit import AUDIT
from airlock.gateway.sections.throttle import BUDGET, THROTTLE
from airlock.gateway.sections.validation import VALIDATION
from airlock.gateway.tables import Table

__all__ = ["STAGE_SECTIONS", "StageSection"]


class StageSection(Protocol):
    """One ``[section]`` of ``airlock.toml`` that becomes stage objects of the policy."""

    #: ``[routes.<name>.<section>]`` may override it.
    per_route: bool
    #: built once per route (its stages depend on the route), not once for all routes.
    route_specific: bool

    def parse(self, table: Table, *, route: str | None) -> Any:
        """Validated settings from ``table`` (``route`` is None for the global table)."""

    def build(self, settings: Any, *, route: str | None, shared: dict[str, Any]) -> dict[str, Any]:
        """Policy fields (``validate``, ``anonymize``, ``admit``, ``budget``, ``audit``, ...).

        ``shared`` lives as long as one app: sections keep objects there that
        several sections or routes must share (a limit storage per URI).
        """


# Section name -> section, in the order their stages are appended to each slot.
STAGE_SECTIONS: dict[str, StageSection] = {
    "validation": VALIDATION,
    "anonymize": ANONYMIZE,
    "throttle": THROTTLE,
    "budget": BUDGET,
    "audit": AUDIT,
}
