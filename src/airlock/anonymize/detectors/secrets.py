"""API keys, tokens, private keys and passwords (entity ``SECRET``).

Provider keys are recognised by their documented prefixes and alphabets; each
pattern starts with a literal (fast to scan for) and is checked in Python for a
clean left boundary, so ``task-...`` is not an OpenAI key. Generic secrets are
values right after a key-like word (``password=``, ``api_key:``, ``token is``)
that look random enough (Shannon entropy, mixed character classes).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator

from airlock.anonymize.detectors.base import Hit

__all__ = ["SecretDetector", "entropy"]


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    size = len(value)
    if not size:
        return 0.0
    return -sum(n / size * math.log2(n / size) for n in Counter(value).values())


def _classes(value: str) -> int:
    return (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )


def _mixed(value: str) -> bool:
    """Keys are random: digits and both letter cases (rules out ``sk-learn-...`` prose)."""
    return (
        any(c.isdigit() for c in value)
        and any(c.isupper() for c in value)
        and any(c.islower() for c in value)
    )


_SK_PREFIX = re.compile(r"sk-(?:proj-|svcacct-|admin-)?")
_HEX_DIGITS = frozenset("0123456789abcdef")


def _sk_key(value: str) -> bool:
    """An ``sk-`` key: mixed like OpenAI's, or 32+ lower-case hex digits like DeepSeek's and
    those of other OpenAI-compatible providers (prose such as ``sk-learn`` is neither)."""
    if _mixed(value):
        return True
    body = value[_SK_PREFIX.match(value).end() :]  # type: ignore[union-attr]
    return (
        len(body) >= 32
        and _HEX_DIGITS.issuperset(body)
        and any(c.isdigit() for c in body)
        and any(c.isalpha() for c in body)
    )


def _jwt(value: str) -> bool:
    header = value.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    except (binascii.Error, ValueError):
        return False
    return b'"alg"' in decoded


# (kind, pattern, group holding the value, extra check, lower-case literals one of which
# must occur for the pattern to match at all: a cheap gate before each regex scan).
Rule = tuple[str, "re.Pattern[str]", int, "Callable[[str], bool] | None", tuple[str, ...]]

_TOKEN = "A-Za-z0-9_-"  # noqa: S105 - a character class, not a password
_RULES: tuple[Rule, ...] = (
    (
        "anthropic_key",
        re.compile(rf"sk-ant-[a-z]{{2,8}}\d{{0,3}}-[{_TOKEN}]{{20,400}}"),
        0,
        None,
        ("sk-ant-",),
    ),
    ("openai_key", re.compile(rf"sk-(?:proj-|svcacct-|admin-)?[{_TOKEN}]{{20,400}}"), 0, _sk_key, ("sk-",)),
    (
        "aws_access_key",
        re.compile(r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        0,
        None,
        ("akia", "asia", "abia", "acca"),
    ),
    (
        "aws_secret_key",
        re.compile(
            r"(?i)(?:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key)[\"']?\s{0,3}(?:[:=]|=>)"
            r"\s{0,3}[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        1,
        None,
        ("secret",),
    ),
    (
        "github_token",
        re.compile(r"gh[pousr]_[A-Za-z0-9]{36,255}"),
        0,
        None,
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    ),
    ("github_token", re.compile(r"github_pat_[A-Za-z0-9_]{50,255}"), 0, None, ("github_pat_",)),
    ("slack_token", re.compile(r"xox[abposre]-[A-Za-z0-9-]{10,250}"), 0, None, ("xox",)),
    ("slack_token", re.compile(r"xapp-\d-[A-Za-z0-9-]{10,250}"), 0, None, ("xapp-",)),
    (
        "slack_webhook",
        re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_+-]{20,250}"),
        0,
        None,
        ("hooks.slack.com",),
    ),
    (
        "stripe_key",
        re.compile(r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}"),
        0,
        None,
        ("k_live_", "k_test_"),
    ),
    ("stripe_key", re.compile(r"whsec_[A-Za-z0-9]{24,247}"), 0, None, ("whsec_",)),
    ("google_api_key", re.compile(rf"AIza[{_TOKEN}]{{35}}(?![{_TOKEN}])"), 0, None, ("aiza",)),
    ("google_oauth", re.compile(rf"ya29\.[{_TOKEN}]{{20,2048}}"), 0, None, ("ya29.",)),
    ("google_oauth", re.compile(rf"GOCSPX-[{_TOKEN}]{{24,40}}"), 0, None, ("gocspx-",)),
    (
        "jwt",
        re.compile(rf"eyJ[{_TOKEN}]{{5,4096}}\.eyJ[{_TOKEN}]{{5,65536}}\.[{_TOKEN}]{{0,4096}}"),
        0,
        _jwt,
        ("eyj",),
    ),
    ("url_password", re.compile(r"://[^\s:/?#@\[\]]{0,256}:([^\s/?#@\[\]]{1,256})@"), 1, None, ("://",)),
    ("bearer_token", re.compile(r"[Bb]earer[ ]{1,3}([A-Za-z0-9._~+/-]{16,4096}=*)"), 1, None, ("bearer",)),
)
# Left boundary: a provider key glued to a letter or digit is part of another word.
_GLUED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

_PEM_BEGIN = re.compile(r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----")
# Base64 chunks separated by whitespace (the separator is mandatory: one way to split).
_PEM_BODY = re.compile(r"(?:\s+[A-Za-z0-9+/=]{16,})*")

_PASSWORD_WORDS = frozenset({"password", "passwd", "pwd", "passphrase", "secret", "pass", "pin"})
_KEYWORD_GATES = ("key", "secret", "token", "pass", "pwd", "credential")
_KEYWORD = re.compile(
    r"(?i)(?<![A-Za-z0-9])(api[_-]?key|apikey|access[_-]?key|secret[_-]?key|client[_-]?secret|private[_-]?key|"
    r"auth[_-]?token|access[_-]?token|refresh[_-]?token|token|secret|passw(?:or)?d|pwd|passphrase|credentials?)"
    r"[A-Za-z0-9_-]{0,20}[\"']?[ ]{0,3}(?::=|=>|[:=]|[ ]is[ ])[ ]{0,3}[\"']?([^\s\"'`,;<>()\[\]{}]{6,256})"
)
_KEYWORD_LOWER = re.compile(_KEYWORD.pattern.replace("(?i)", "", 1))
_PLAIN_WORD = re.compile(r"[a-z]+|[A-Z][a-z]+|[A-Z]+|\*+|x+|X+|\.+|(?:your|my)[_-]?\w+|<\w+>|\$\{?\w+\}?")


def _keyword_value(keyword: str, value: str) -> bool:
    value = value.rstrip(".")
    if len(value) < 6 or _PLAIN_WORD.fullmatch(value):
        return False
    if keyword.lower() in _PASSWORD_WORDS:
        # A password after "password:" needs only not to be a plain word.
        return len(set(value)) > 2
    return len(value) >= 12 and _classes(value) >= 2 and entropy(value) >= 3.0


# Every gate, checked once per text with plain substring tests on the lower-cased text
# (much faster than one case-insensitive alternation); most texts hold none.
_ALL_GATES = tuple(sorted({g for rule in _RULES for g in rule[4]} | set(_KEYWORD_GATES) | {"private key"}))


def _gate_groups(gates: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Gates grouped by a punctuation character they hold ("" for letters-only gates).

    Prose rarely holds "_" or ":", so one test for the character skips the gates that
    need it: the gate check is most of what a text without secrets costs.
    """
    groups: dict[str, list[str]] = {}
    for gate in gates:
        trigger = next((c for c in gate if c in "_:-./"), "")
        groups.setdefault(trigger, []).append(gate)
    return tuple((trigger, tuple(members)) for trigger, members in sorted(groups.items()))


_GATE_GROUPS = _gate_groups(_ALL_GATES)


def _present(lowered: str) -> set[str]:
    """The gates that occur in ``lowered``."""
    return {
        gate
        for trigger, gates in _GATE_GROUPS
        if not trigger or trigger in lowered
        for gate in gates
        if gate in lowered
    }


class SecretDetector:
    """Provider API keys, JWTs, PEM private keys, URL passwords and key-like assignments."""

    entities: tuple[str, ...] = ("SECRET",)

    def __repr__(self) -> str:
        return "SecretDetector()"

    def find(self, canon: str) -> Iterator[Hit]:
        lowered = canon.lower()
        present = _present(lowered)
        if not present:
            return
        found: list[tuple[int, int]] = []
        for kind, pattern, group, check, gates in _RULES:
            if not any(gate in present for gate in gates):
                continue
            for match in pattern.finditer(canon):
                left = match.start()
                if left > 0 and canon[left - 1] in _GLUED and (group == 0 or kind == "bearer_token"):
                    continue
                start, end = match.span(group)
                if check is not None and not check(canon[start:end]):
                    continue
                found.append((start, end))
                yield Hit(start, end, "SECRET", kind)
        if "private key" in present:
            yield from self._pem(canon)
        if not any(gate in present for gate in _KEYWORD_GATES):
            return
        # Case-insensitive keywords: matched on the lower-cased text when that keeps
        # every offset (ASCII), which is much faster than an IGNORECASE scan.
        keyword_text, pattern = (lowered, _KEYWORD_LOWER) if canon.isascii() else (canon, _KEYWORD)
        for match in pattern.finditer(keyword_text):
            start, end = match.span(2)
            if any(s < end and start < e for s, e in found):
                continue  # already a provider key (OPENAI_API_KEY=sk-...)
            if _keyword_value(match.group(1), canon[start:end]):
                while end > start and canon[end - 1] == ".":
                    end -= 1
                yield Hit(start, end, "SECRET", "keyword_secret")

    @staticmethod
    def _pem(canon: str) -> Iterator[Hit]:
        position = 0
        ends_left = True
        while True:
            begin = _PEM_BEGIN.search(canon, position)
            if begin is None:
                return
            end = _PEM_END.search(canon, begin.end()) if ends_left else None
            if end is not None:
                stop = end.end()
            else:
                # No END marker after this point: a truncated key is still a key.
                ends_left = False
                stop = _PEM_BODY.match(canon, begin.end()).end()  # type: ignore[union-attr]
            yield Hit(begin.start(), stop, "SECRET", "private_key")
            position = stop
