"""One line of ``airlock doctor``'s table."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Check"]


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "pass" | "warn" | "fail" | "skip"
    detail: str
