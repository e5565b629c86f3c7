"""The :class:`Anonymizer`: detectors + operators over one text, with a vault to map back."""

from __future__ import annotations

import contextlib
import hashlib
import re
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airlock.anonymize.canonical import canonicalize
from airlock.anonymize.detectors.base import DEFAULT_PHONE_REGIONS, Detector, Hit, check_entity
from airlock.anonymize.detectors.lists import allow_set
from airlock.anonymize.operators import Operator, OperatorContext, operator_from, resolve_key
from airlock.anonymize.vault import Vault
from airlock.errors import ConfigurationError

__all__ = ["BUILTIN_ENTITIES", "AnonymizeResult", "Anonymizer", "Finding"]

BUILTIN_ENTITIES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "SECRET")
# When two findings overlap, the higher priority wins, then the longer one: a
# password inside a URL beats the e-mail-looking "pass@host.com" around it.
_PRIORITY = {
    "SECRET": 60,
    "CREDIT_CARD": 50,
    "IBAN": 50,
    "US_SSN": 40,
    "EMAIL": 30,
    "IP_ADDRESS": 20,
    "PHONE": 10,
}
_CUSTOM_PRIORITY = 35
_DENY_PRIORITY = 70
_DEFAULT_OPERATORS = {"SECRET": "redact"}
_DIGIT = re.compile(r"[0-9]").search
# Cards, SSNs, IBANs and phone numbers all hold a run of at least seven digits and
# separators (in the canonical view, where every digit is ASCII and every dash "-").
_NUMBER = re.compile(r"\d[\d .()/-]{5,}\d", re.ASCII).search
# An accepted finding: original start/end, entity, kind, canonical start/end.
_Accepted = tuple[int, int, str, str, int, int]


@dataclass(frozen=True, slots=True)
class Finding:
    """One value found: its entity type, where it is in the ORIGINAL text, and a content-free kind.

    A finding never holds the value itself (slice the text if you need it), so
    it is safe to log, count or put in an audit record.
    """

    entity: str
    start: int
    end: int
    kind: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class AnonymizeResult:
    """``text`` with every finding replaced; ``vault`` maps pseudonyms back."""

    text: str
    findings: tuple[Finding, ...]
    vault: Vault

    def __repr__(self) -> str:
        return f"<AnonymizeResult findings={len(self.findings)} chars={len(self.text)}>"

    @property
    def counts(self) -> dict[str, int]:
        """Findings per entity type."""
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.entity] = counts.get(finding.entity, 0) + 1
        return counts


class Anonymizer:
    """Finds personal data and secrets and replaces them, per entity type.

    :param entities: built-in entity types to look for (default: all of
        ``EMAIL, PHONE, CREDIT_CARD, IBAN, IP_ADDRESS, US_SSN, SECRET``).
    :param operators: entity -> operator (``"redact"``, ``"mask"``, ``"hash"``,
        ``"pseudonymize"`` or an operator object); ``"*"`` sets the default for
        every entity not named. Default: ``pseudonymize``, and ``redact`` for ``SECRET``
        (unless ``"*"`` is given).
    :param key: HMAC key for ``hash`` and ``pseudonymize`` (>= 16 bytes); default
        ``$AIRLOCK_ANONYMIZE_KEY``, else a random key per process.
    :param phone_regions: regions whose national phone formats are accepted
        (international ``+..`` numbers are always accepted).
    :param detectors: extra detectors, e.g. :class:`PatternDetector`.
    :param allow: values never reported (compared on their canonical, case-folded form).
    :param deny: terms always reported: a list (entity ``DENY_LIST``) or a mapping entity -> terms.
    :param cache_size: how many texts' findings to remember (0 turns it off). Chat
        clients send the whole conversation with every turn, so most texts were seen
        before; the cache is keyed by a keyed hash of the text and holds only
        offsets and entity types, never the text or a value.
    """

    def __init__(
        self,
        *,
        entities: Iterable[str] | None = None,
        operators: Mapping[str, str | Operator] | None = None,
        key: str | bytes | None = None,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        detectors: Iterable[Detector] = (),
        allow: Iterable[str] = (),
        deny: Mapping[str, Iterable[str]] | Iterable[str] = (),
        cache_size: int = 4096,
    ) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigurationError("Anonymizer(cache_size=...) must be an integer >= 0")
        wanted = set(BUILTIN_ENTITIES if entities is None else (check_entity(e) for e in entities))
        unknown = wanted - set(BUILTIN_ENTITIES)
        if unknown:
            raise ConfigurationError(
                f"unknown entity type(s): {', '.join(sorted(unknown))}; "
                f"built-in: {', '.join(BUILTIN_ENTITIES)}"
            )
        try:
            from airlock.anonymize.detectors import (
                CardDetector,
                DenyList,
                EmailDetector,
                IbanDetector,
                IpDetector,
                PhoneDetector,
                SecretDetector,
                SsnDetector,
            )
        except ImportError as exc:
            raise ConfigurationError(
                f"the Anonymizer needs the anonymize extra ({exc.name} is missing): "
                "pip install 'asgi-airlock[anonymize]'"
            ) from None
        builtin: list[Detector] = []
        if "EMAIL" in wanted:
            builtin.append(EmailDetector())
        if "CREDIT_CARD" in wanted:
            builtin.append(CardDetector())
        if "IBAN" in wanted:
            builtin.append(IbanDetector())
        if "IP_ADDRESS" in wanted:
            builtin.append(IpDetector())
        if "US_SSN" in wanted:
            builtin.append(SsnDetector())
        if "SECRET" in wanted:
            builtin.append(SecretDetector())
        priority = dict(_PRIORITY)
        extra = list(detectors)
        for detector in extra:
            if not isinstance(detector, Detector):
                raise ConfigurationError("detectors must have an 'entities' tuple and a find(canon) method")
            for entity in detector.entities:
                priority.setdefault(check_entity(entity), _CUSTOM_PRIORITY)
        deny_list = DenyList(deny)
        if deny_list:
            extra.append(deny_list)
            for entity in deny_list.entities:
                priority[entity] = _DENY_PRIORITY
        self._detectors: tuple[Detector, ...] = (*builtin, *extra)
        # Built-in detectors say what a text must hold for them to find anything (a digit,
        # or a run of 7+ digits and separators); the engine checks that once per text.
        needs = [getattr(d, "needs", None) for d in self._detectors]
        self._plain = tuple(d for d, n in zip(self._detectors, needs, strict=True) if n is None)
        self._with_digits = tuple(
            d for d, n in zip(self._detectors, needs, strict=True) if n in (None, "digit")
        )
        # Phones run last: every other entity outranks them, so what the others
        # found need not be parsed as a phone number (the costly step).
        self._phone: Any = PhoneDetector(phone_regions) if "PHONE" in wanted else None
        self._priority = priority
        everything = (*self._detectors, *((self._phone,) if self._phone else ()))
        self.entities = tuple(dict.fromkeys(e for d in everything for e in d.entities))
        self._allow = allow_set(allow)

        specs: dict[str, str | Operator] = dict(operators or {})
        if "*" not in specs:
            # Secrets are redacted unless the caller chose a default for everything.
            specs = {**_DEFAULT_OPERATORS, **specs}
        default = operator_from(specs.pop("*", "pseudonymize"))
        self._operators: dict[str, Operator] = {}
        for entity, spec in specs.items():
            self._operators[check_entity(entity)] = operator_from(spec)
        self._default_operator = default
        # Only hash and pseudonymize (and custom operators) use the key: no warning
        # about a missing key when every operator is redact or mask.
        keyed = any(op.name not in ("redact", "mask") for op in (default, *self._operators.values()))
        self._key, self.key_is_stable = resolve_key(key, warn=keyed)
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, list[_Accepted]] = OrderedDict()
        self._cache_key = hashlib.sha256(b"airlock-anonymize-cache\x00" + self._key).digest()

    def __repr__(self) -> str:
        return f"Anonymizer(entities={self.entities!r})"

    def operator_for(self, entity: str) -> Operator:
        return self._operators.get(entity, self._default_operator)

    def _hits(self, text: str, *, with_canon: bool = True) -> tuple[list[_Accepted], str]:
        """Accepted findings as (orig start, orig end, entity, kind, canon start, canon end)."""
        if not self._cache_size:
            return self._detect(text)
        digest = hashlib.blake2b(
            text.encode("utf-8", "surrogatepass"), key=self._cache_key, digest_size=16
        ).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            # Most recently used goes last (pop + set cannot fail if another thread evicted it).
            self._cache.pop(digest, None)
            self._cache[digest] = cached
            return cached, (canonicalize(text).canon if cached and with_canon else text)
        hits, canon = self._detect(text)
        self._cache[digest] = hits
        if len(self._cache) > self._cache_size:
            with contextlib.suppress(KeyError):
                self._cache.popitem(last=False)
        return hits, canon

    def _detect(self, text: str) -> tuple[list[_Accepted], str]:
        view = canonicalize(text)
        canon = view.canon
        candidates: list[Hit] = []
        priority = self._priority
        numbers = False
        detectors = self._plain
        if _DIGIT(canon) is not None:
            numbers = _NUMBER(canon) is not None
            detectors = self._detectors if numbers else self._with_digits
        for detector in detectors:
            candidates.extend(detector.find(canon))
        if self._phone is not None and numbers:
            claimed = [(h.start, h.end) for h in candidates if priority.get(h.entity, _CUSTOM_PRIORITY) > 10]
            candidates.extend(self._phone.find(canon, claimed))
        if not candidates:
            return [], canon
        allow = self._allow
        if len(candidates) > 1:
            candidates.sort(
                key=lambda h: (-priority.get(h.entity, _CUSTOM_PRIORITY), h.start - h.end, h.start)
            )
        starts: list[int] = []
        ends: list[int] = []
        accepted: list[_Accepted] = []
        size = len(canon)
        for hit in candidates:
            start, end = hit.start, hit.end
            if not 0 <= start < end <= size:
                continue  # an empty or out-of-range span from a custom detector
            index = bisect_left(starts, start)
            if index > 0 and ends[index - 1] > start:
                continue
            if index < len(starts) and starts[index] < end:
                continue
            if allow and canon[start:end].casefold().strip() in allow:
                continue
            starts.insert(index, start)
            ends.insert(index, end)
            orig_start, orig_end = view.span(start, end)
            accepted.append((orig_start, orig_end, hit.entity, hit.kind, start, end))
        accepted.sort()
        return accepted, canon

    def detect(self, text: str) -> list[Finding]:
        """Where the personal data and secrets in ``text`` are (offsets into ``text``)."""
        hits, _ = self._hits(text, with_canon=False)
        return [Finding(entity, start, end, kind) for start, end, entity, kind, _, _ in hits]

    def anonymize(self, text: str, *, vault: Vault | None = None, scope: str = "") -> AnonymizeResult:
        """Replace what :meth:`detect` finds; pseudonyms go into ``vault`` (a new one by default).

        ``scope`` is mixed into pseudonyms (e.g. the caller's identity), so two
        callers never share placeholders for the same value.
        """
        if vault is None:
            vault = Vault()
        if not isinstance(text, str):
            raise TypeError("Anonymizer.anonymize() takes a str")
        hits, canon = self._hits(text)
        if not hits:
            return AnonymizeResult(text, (), vault)
        context = OperatorContext(self._key, vault, scope)
        pieces: list[str] = []
        findings: list[Finding] = []
        position = 0
        for start, end, entity, kind, canon_start, canon_end in hits:
            pieces.append(text[position:start])
            normal = canon[canon_start:canon_end].casefold()
            pieces.append(self.operator_for(entity)(entity, text[start:end], normal, context))
            findings.append(Finding(entity, start, end, kind))
            position = end
        pieces.append(text[position:])
        return AnonymizeResult("".join(pieces), tuple(findings), vault)

    @staticmethod
    def restore(text: str, vault: Vault) -> str:
        """``text`` with the placeholders of ``vault`` replaced by their originals."""
        return vault.restore(text)
