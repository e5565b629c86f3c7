"""Personal data and secrets out of user content, pseudonyms back into replies.

::

    from airlock.anonymize import Anonymizer

    result = Anonymizer().anonymize("Mail jane.doe@example.com, card 4111 1111 1111 1111")
    result.text       # 'Mail [EMAIL_5d0c...], card [CREDIT_CARD_93ab...]'
    result.findings   # (Finding(entity='EMAIL', start=5, end=25, kind='email'), ...)
    result.vault.restore(result.text)  # the original text

In a policy, :class:`Anonymize` runs it over the JSON fields that carry user
content and restores pseudonyms in the response (JSON, SSE streams, plain text).
"""

from __future__ import annotations

from airlock.anonymize.canonical import Canonical, canonicalize
from airlock.anonymize.detectors.base import DEFAULT_PHONE_REGIONS, Detector, Hit, PatternDetector
from airlock.anonymize.engine import BUILTIN_ENTITIES, Anonymizer, AnonymizeResult, Finding
from airlock.anonymize.operators import KEY_ENV, Hash, Mask, Operator, Pseudonymize, Redact
from airlock.anonymize.restore import RestoreFilter
from airlock.anonymize.stage import DEFAULT_FIELDS, Anonymize
from airlock.anonymize.vault import Vault

__all__ = [
    "BUILTIN_ENTITIES",
    "DEFAULT_FIELDS",
    "DEFAULT_PHONE_REGIONS",
    "KEY_ENV",
    "Anonymize",
    "AnonymizeResult",
    "Anonymizer",
    "Canonical",
    "Detector",
    "Finding",
    "Hash",
    "Hit",
    "Mask",
    "Operator",
    "PatternDetector",
    "Pseudonymize",
    "Redact",
    "RestoreFilter",
    "Vault",
    "canonicalize",
]
