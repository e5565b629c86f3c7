"""airlock: async ASGI middleware that checks user content before it reaches an AI provider.

Size limits, JSON parsing, identity, validation, sanitisation, anonymization,
rate limits, token budgets and an audit log, run by one engine behind three
front doors: :class:`AirlockMiddleware`, :func:`protect` (per-route decorator)
and :class:`airlock.fastapi.Airlock` (FastAPI dependency).

The stage classes (``Validate``, ``Sanitize``, ``Anonymize``, ``RateLimit``,
``TokenBudget``, ``AuditLog`` ...) are importable from here too, but are only
loaded on first use: ``import airlock`` stays cheap, and a stage whose optional
extra is not installed fails only when you use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from airlock.context import Context, Identity, Usage
from airlock.decorators import exempt, protect
from airlock.errors import AirlockError, ConfigurationError, Rejection
from airlock.identity import ApiKeyAuth, ClientAddress, FromCallable, from_user
from airlock.keys import KeyStore, generate_key, hash_key
from airlock.middleware import AirlockMiddleware
from airlock.pipeline import STAGE_ORDER, Engine
from airlock.policy import AuditSink, Identifier, Policy, Stage

__version__ = "0.1.0.dev0"

# name -> module, imported on first attribute access (PEP 562).
_LAZY = {
    "Validate": "airlock.validation",
    "StructureCaps": "airlock.validation",
    "Sanitize": "airlock.sanitize",
    "Anonymize": "airlock.anonymize",
    "Anonymizer": "airlock.anonymize",
    "RateLimit": "airlock.throttle",
    "ConcurrencyLimit": "airlock.throttle",
    "TokenBudget": "airlock.throttle",
    "LimitStorage": "airlock.throttle",
    "Alerts": "airlock.throttle",
    "AuditLog": "airlock.audit",
    "RequireConsent": "airlock.audit",
}

if TYPE_CHECKING:
    from airlock.anonymize import Anonymize, Anonymizer
    from airlock.audit import AuditLog, RequireConsent
    from airlock.sanitize import Sanitize
    from airlock.throttle import Alerts, ConcurrencyLimit, LimitStorage, RateLimit, TokenBudget
    from airlock.validation import StructureCaps, Validate


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'airlock' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "STAGE_ORDER",
    "AirlockError",
    "AirlockMiddleware",
    "Alerts",
    "Anonymize",
    "Anonymizer",
    "ApiKeyAuth",
    "AuditLog",
    "AuditSink",
    "ClientAddress",
    "ConcurrencyLimit",
    "ConfigurationError",
    "Context",
    "Engine",
    "FromCallable",
    "Identifier",
    "Identity",
    "KeyStore",
    "LimitStorage",
    "Policy",
    "RateLimit",
    "Rejection",
    "RequireConsent",
    "Sanitize",
    "Stage",
    "StructureCaps",
    "TokenBudget",
    "Usage",
    "Validate",
    "__version__",
    "exempt",
    "from_user",
    "generate_key",
    "hash_key",
    "protect",
]
