"""Custom Cerberus rules and types, registered once and usable in every schema.

Cerberus learns new rules from ``_validate_<name>`` methods of a ``Validator``
subclass and new types from its ``types_mapping``. Asking every user to subclass
(and every schema to name the subclass) does not compose, so airlock keeps one
registry and builds the subclass from it::

    from airlock.validation import register_rule, register_type

    register_rule("no_urls", lambda forbid, value: not (forbid and isinstance(value, str) and "://" in value))
    register_type("id", str)

    Validate(schema={"name": {"type": "id", "no_urls": True}})

A rule's ``check(constraint, value)`` returns ``True`` when the value passes. It
sees any JSON value, ``None`` included (Cerberus runs custom rules on ``None``
too). A failing rule is reported as ``{"path": ..., "rule": "<name>"}``, never
with the value. The same ``check`` runs on airlock's compiled fast path, so both
paths agree by construction.

airlock ships two rules and one type, used by the presets: ``maxitems`` (length
cap for lists only, unlike ``maxlength`` which also counts the characters of a
string), ``maxchars`` (characters of a string, or of the ``text`` of every part
of a list of content parts) and ``int`` (an integer that is not a boolean:
Cerberus's ``integer`` accepts ``true`` and ``false``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cerberus
from cerberus import errors as cerberus_errors
from cerberus.utils import TypeDefinition

from airlock.errors import ConfigurationError

__all__ = [
    "Rule",
    "register_rule",
    "register_type",
    "registered_rules",
    "registered_types",
    "validator_class",
]

Check = Callable[[Any, Any], bool]

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class Rule:
    """One registered rule: its name, its check and the Cerberus schema of its constraint."""

    name: str
    check: Check
    constraint: Mapping[str, Any]


_lock = threading.Lock()
_rules: dict[str, Rule] = {}
_types: dict[str, TypeDefinition] = {}
_version = 0
_class_cache: tuple[int, type[cerberus.Validator]] | None = None


def _check_name(name: str, kind: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigurationError(f"{kind} name must match [a-z_][a-z0-9_]* (got {name!r})")


def register_rule(name: str, check: Check, *, constraint: Mapping[str, Any] | None = None) -> None:
    """Make rule ``name`` available to every schema built from now on.

    :param check: ``check(constraint, value) -> bool``; ``True`` means the value passes.
        Keep it pure and fast: it runs for every request on every field that names it.
    :param constraint: Cerberus rules the constraint itself must satisfy, checked when a
        schema is built (default ``{"type": "boolean"}``).
    """
    global _version
    _check_name(name, "rule")
    if not callable(check):
        raise ConfigurationError(f"rule {name!r}: check must be callable")
    if name in cerberus.Validator.rules:
        raise ConfigurationError(f"rule {name!r} is a built-in Cerberus rule")
    rule = Rule(name, check, dict(constraint) if constraint is not None else {"type": "boolean"})
    with _lock:
        existing = _rules.get(name)
        if existing is not None:
            if existing == rule:
                return  # registering the same rule twice (e.g. a re-imported module) is harmless
            raise ConfigurationError(f"rule {name!r} is already registered with a different check")
        _rules[name] = rule
        _version += 1


def register_type(name: str, include: type | tuple[type, ...], exclude: type | tuple[type, ...] = ()) -> None:
    """Make type ``name`` usable in ``{"type": name}``: values that are instances of
    ``include`` and not of ``exclude``."""
    global _version
    _check_name(name, "type")
    if name in cerberus.Validator.types_mapping:
        raise ConfigurationError(f"type {name!r} is a built-in Cerberus type")
    included = include if isinstance(include, tuple) else (include,)
    excluded = exclude if isinstance(exclude, tuple) else (exclude,)
    if not all(isinstance(t, type) for t in (*included, *excluded)):
        raise ConfigurationError(f"type {name!r}: include and exclude take classes")
    definition = TypeDefinition(name, included, excluded)
    with _lock:
        existing = _types.get(name)
        if existing is not None:
            if existing == definition:
                return
            raise ConfigurationError(f"type {name!r} is already registered differently")
        _types[name] = definition
        _version += 1


def registered_rules() -> dict[str, Rule]:
    with _lock:
        return dict(_rules)


def registered_types() -> dict[str, TypeDefinition]:
    with _lock:
        return dict(_types)


def _rule_method(rule: Rule) -> Callable[..., None]:
    check = rule.check
    # Code 0x00 keeps the error a plain (non-group) error; naming the rule lets
    # airlock report it like any built-in rule.
    definition = cerberus_errors.ErrorDefinition(0x00, rule.name)
    message = f"failed rule '{rule.name}'"

    def method(self: Any, constraint: Any, field: Any, value: Any) -> None:
        if not check(constraint, value):
            self._error(field, definition, message)

    # Cerberus reads the constraint's own schema from the docstring.
    method.__doc__ = repr(dict(rule.constraint))
    return method


def validator_class() -> type[cerberus.Validator]:
    """The Cerberus ``Validator`` subclass with every registered rule and type."""
    global _class_cache
    with _lock:
        if _class_cache is not None and _class_cache[0] == _version:
            return _class_cache[1]
        namespace: dict[str, Any] = {
            "__doc__": "cerberus.Validator with airlock's registered rules and types.",
            "types_mapping": {**cerberus.Validator.types_mapping, **_types},
            # Each class keeps its own cache of schemas it has checked.
            "_valid_schemas": set(),
        }
        for rule in _rules.values():
            namespace[f"_validate_{rule.name}"] = _rule_method(rule)
        metaclass = type(cerberus.Validator)
        cls: type[cerberus.Validator] = metaclass("AirlockValidator", (cerberus.Validator,), namespace)
        _class_cache = (_version, cls)
        return cls


# ---- the rules airlock itself ships -------------------------------------------------------


def _maxitems(limit: Any, value: Any) -> bool:
    return not isinstance(value, list) or bool(len(value) <= limit)


def _maxchars(limit: Any, value: Any) -> bool:
    if isinstance(value, str):
        return bool(len(value) <= limit)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    total += len(text)
        return bool(total <= limit)
    return True


register_rule("maxitems", _maxitems, constraint={"type": "integer", "min": 0})
register_rule("maxchars", _maxchars, constraint={"type": "integer", "min": 0})
# Cerberus's "integer" accepts true and false (bool is an int in Python); JSON APIs do not.
register_type("int", int, exclude=bool)
