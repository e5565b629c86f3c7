"""Detectors: each finds one family of personal data or secrets on the canonical view.

The built-in detectors need the ``anonymize`` extra (phonenumbers, python-stdnum);
they are imported on first use, so ``Detector``/``PatternDetector`` work without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from airlock.anonymize.detectors.base import DEFAULT_PHONE_REGIONS, Detector, Hit, PatternDetector

__all__ = [
    "DEFAULT_PHONE_REGIONS",
    "CardDetector",
    "DenyList",
    "Detector",
    "EmailDetector",
    "Hit",
    "IbanDetector",
    "IpDetector",
    "PatternDetector",
    "PhoneDetector",
    "SecretDetector",
    "SsnDetector",
]

_LAZY = {
    "CardDetector": "numbers",
    "SsnDetector": "numbers",
    "IbanDetector": "iban",
    "PhoneDetector": "phone",
    "EmailDetector": "network",
    "IpDetector": "network",
    "SecretDetector": "secrets",
    "DenyList": "lists",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"airlock.anonymize.detectors.{module}"), name)
