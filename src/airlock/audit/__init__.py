"""The audit log: one structured, PII-free, hash-chained JSON event per request.

::

    from airlock import AirlockMiddleware, Policy
    from airlock.audit import AuditLog, RequireConsent

    audit = AuditLog(path="/var/log/airlock/audit.jsonl", max_bytes=50_000_000, backup_count=10)
    app.add_middleware(AirlockMiddleware, policy=Policy(audit=audit))

``airlock audit verify FILE...`` checks the chain. See ``notes/readme-audit.md``
for the event schema.
"""

from airlock.audit.consent import RequireConsent
from airlock.audit.event import SCHEMA, build_event
from airlock.audit.hashing import CHAIN_KEY_ENV, IDENTITY_KEY_ENV, KeyedHasher
from airlock.audit.log import AuditLog
from airlock.audit.sink import AuditFormatter
from airlock.audit.verify import Report, verify_files

__all__ = [
    "CHAIN_KEY_ENV",
    "IDENTITY_KEY_ENV",
    "SCHEMA",
    "AuditFormatter",
    "AuditLog",
    "KeyedHasher",
    "Report",
    "RequireConsent",
    "build_event",
    "verify_files",
]
