"""airlock: async ASGI middleware that checks user content before it reaches an AI provider.

Size limits, JSON parsing, identity, validation, sanitisation, anonymization,
rate limits, token budgets and an audit log, run by one engine behind three
front doors: :class:`AirlockMiddleware`, :func:`protect` (per-route decorator)
and :class:`airlock.fastapi.Airlock` (FastAPI dependency).
"""

from airlock.context import Context, Identity, Usage
from airlock.decorators import exempt, protect
from airlock.errors import AirlockError, ConfigurationError, Rejection
from airlock.identity import ApiKeyAuth, ClientAddress, FromCallable, from_user
from airlock.keys import KeyStore, generate_key, hash_key
from airlock.middleware import AirlockMiddleware
from airlock.pipeline import STAGE_ORDER, Engine
from airlock.policy import AuditSink, Identifier, Policy, Stage

__version__ = "0.1.0.dev0"

__all__ = [
    "STAGE_ORDER",
    "AirlockError",
    "AirlockMiddleware",
    "ApiKeyAuth",
    "AuditSink",
    "ClientAddress",
    "ConfigurationError",
    "Context",
    "Engine",
    "FromCallable",
    "Identifier",
    "Identity",
    "KeyStore",
    "Policy",
    "Rejection",
    "Stage",
    "Usage",
    "__version__",
    "exempt",
    "from_user",
    "generate_key",
    "hash_key",
    "protect",
]
