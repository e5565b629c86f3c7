"""A Cerberus schema compiled to plain Python closures: the same answers in microseconds.

Cerberus interprets its schema on every call: it looks up a handler per rule and
field, builds a child validator for every nested dict and list item and keeps
error trees it will never be asked for. For a JSON document and the rules below
the outcome is a pure function of the value, so it can be decided once, when the
schema is built, and run as a few closures per field.

Compiled rules: ``type``, ``nullable``, ``empty``, ``allowed``, ``forbidden``,
``min``, ``max``, ``minlength``, ``maxlength``, ``regex``, ``schema`` (dicts and
lists), ``keysrules``, ``valuesrules``, ``required``, ``allow_unknown`` and
``require_all`` as booleans, ``meta``, and every rule registered with
:func:`~airlock.validation.register_rule`. Anything else (``*of`` rules,
``check_with``, ``dependencies``, ``excludes``, ``items``, ``contains``,
``readonly``, normalisation, registry references) raises :class:`NotCompilable`
and the schema runs on Cerberus itself.

Each rule mirrors the Cerberus 1.3 method of the same name, including its order
(``nullable``, ``type``, ``empty`` first; a failed ``type`` stops the field;
``None`` and empty values skip the rules Cerberus skips). The differential test
(tests/test_validation_differential.py) checks that the compiled path and plain
Cerberus report the same ``(path, rule)`` pairs on generated documents.

The compiled checks assume JSON-typed documents (dict, list, str, int, float,
bool, None), which is what airlock's parse stage produces.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

import cerberus
from cerberus.utils import TypeDefinition

from airlock.validation.rules import Rule

__all__ = ["Errors", "MappingCheck", "NotCompilable", "Path", "compile_schema"]

Path = tuple[Any, ...]
Errors = list[tuple[Path, str]]
FieldCheck = Callable[[Any, Path, Any, Errors], None]
MappingCheck = Callable[[dict[str, Any], Path, Errors], None]
Step = Callable[[Any, Path, Any, Errors], None]


class NotCompilable(Exception):
    """The schema uses something the compiler does not mirror; use Cerberus for it."""


# Rules handled here. Cerberus runs ``nullable``, ``type`` and ``empty`` first; a
# failed type stops the field; None skips every built-in rule below
# (Validator._validate_nullable) and an empty value with an ``empty`` rule skips
# allowed, forbidden, minlength, maxlength and regex (Validator._validate_empty).
# Registered rules are skipped by neither.
_COMPILED_RULES = frozenset(
    {"nullable", "type", "empty", "required", "meta", "allow_unknown", "require_all"}
    | {
        "allowed",
        "forbidden",
        "min",
        "max",
        "minlength",
        "maxlength",
        "regex",
        "schema",
        "keysrules",
        "valuesrules",
    }
)

# For JSON values, Cerberus's abstract types reduce to concrete ones (isinstance on
# an ABC is several times slower than on a builtin class).
_JSON_TYPES: dict[str, tuple[tuple[type, ...], tuple[type, ...]]] = {
    "string": ((str,), ()),
    "integer": ((int,), ()),
    "float": ((float, int), ()),
    "number": ((int, float), (bool,)),
    "boolean": ((bool,), ()),
    "dict": ((dict,), ()),
    "list": ((list,), ()),
    "container": ((list, dict), ()),
    "binary": ((bytes, bytearray), ()),
    "set": ((set,), ()),
}
_SIZED = (str, list, dict)
_CONTAINERS = (list, dict)
_JSON_CLASSES = (dict, list, str, int, float, bool)
_NUMBERS = (int, float)


class _Compiler:
    def __init__(self, validator_cls: type[cerberus.Validator], rules: Mapping[str, Rule]) -> None:
        self.types: Mapping[str, TypeDefinition] = validator_cls.types_mapping
        self.rules = rules

    # -- types -------------------------------------------------------------------------

    def type_spec(self, name: Any) -> tuple[tuple[type, ...], tuple[type, ...]]:
        if not isinstance(name, str):
            raise NotCompilable("type names must be strings")
        definition = self.types.get(name)
        if definition is None:
            raise NotCompilable(f"unknown type {name!r}")
        if name in _JSON_TYPES and definition is cerberus.Validator.types_mapping.get(name):
            return _JSON_TYPES[name]
        return (tuple(definition.included_types), tuple(definition.excluded_types))

    def type_test(self, constraint: Any) -> tuple[tuple[type, ...] | None, dict[type, bool] | None]:
        """``(classes, None)`` when one isinstance check decides the type rule, else
        ``(None, answers)``; ``(None, None)`` when there is no type rule.

        With exclusions (``number``: int but not bool) the answer depends only on the
        value's class, so ``answers`` maps each JSON class to it, worked out once.
        """
        if not constraint:
            return None, None  # Cerberus skips an empty type rule
        names = (constraint,) if isinstance(constraint, str) else tuple(constraint)
        specs = [self.type_spec(name) for name in names]
        if all(not excluded for _, excluded in specs):
            return tuple(t for inc, _ in specs for t in inc), None
        answers: dict[type, bool] = {
            kind: any(issubclass(kind, inc) and not (exc and issubclass(kind, exc)) for inc, exc in specs)
            for kind in _JSON_CLASSES
        }
        return None, answers

    def admits(self, rules: Mapping[str, Any], kind: type) -> bool:
        """Whether a value of ``kind`` can get past the field's type rule."""
        constraint = rules.get("type")
        if not constraint:
            return True
        included, answers = self.type_test(constraint)
        if included is not None:
            return issubclass(kind, included)
        return answers is None or answers[kind]

    # -- mappings ----------------------------------------------------------------------

    def mapping(self, schema: Any, allow_unknown: Any, require_all: Any) -> MappingCheck:
        if not isinstance(schema, Mapping):
            raise NotCompilable("schema references are not compiled")
        if not isinstance(allow_unknown, bool) or not isinstance(require_all, bool):
            raise NotCompilable("allow_unknown and require_all must be booleans")
        fields: dict[Any, FieldCheck] = {}
        required: list[Any] = []
        for name, rules in schema.items():
            if not isinstance(rules, Mapping):
                raise NotCompilable("rules-set references are not compiled")
            fields[name] = self.field(rules, allow_unknown, require_all)
            if rules.get("required", require_all) is True:
                required.append(name)
        get = fields.get
        required_fields = tuple(required)

        def check_mapping(document: dict[str, Any], path: Path, errors: Errors) -> None:
            for key, value in document.items():
                check = get(key)
                if check is not None:
                    check(value, path, key, errors)
                elif not allow_unknown:
                    errors.append(((*path, key), "unknown"))
            for name in required_fields:
                if name not in document:
                    errors.append(((*path, name), "required"))

        return check_mapping

    # -- fields ------------------------------------------------------------------------

    def field(self, rules: Mapping[str, Any], allow_unknown: bool, require_all: bool) -> FieldCheck:
        for rule in rules:
            if rule not in _COMPILED_RULES and rule not in self.rules:
                raise NotCompilable(f"rule {rule!r} is not compiled")
        # The simple rules are checked inline (one call per field, not one per rule);
        # rules that descend into containers and registered rules are called.
        nullable = bool(rules.get("nullable", False))
        included, type_answers = self.type_test(rules.get("type"))
        has_empty = "empty" in rules
        empty_ok = bool(rules.get("empty"))
        allowed = _allowed_test(rules["allowed"]) if "allowed" in rules else None
        forbidden = _forbidden_test(rules["forbidden"]) if "forbidden" in rules else None
        minlength = rules.get("minlength")
        maxlength = rules.get("maxlength")
        regex = _regex_test(rules["regex"]) if "regex" in rules else None
        low, high = rules.get("min"), rules.get("max")
        low_numeric = isinstance(low, (int, float)) and not isinstance(low, bool)
        high_numeric = isinstance(high, (int, float)) and not isinstance(high, bool)
        customs = tuple((rule, self.rules[rule].check, c) for rule, c in rules.items() if rule in self.rules)
        containers = tuple(
            self.container_step(rule, c, rules, allow_unknown, require_all)
            for rule, c in rules.items()
            if rule in ("schema", "keysrules", "valuesrules")
        )

        def check_field(value: Any, path: Path, key: Any, errors: Errors) -> None:
            if value is None:
                if not nullable:
                    errors.append(((*path, key), "nullable"))
                # Cerberus drops every other built-in rule for None, not registered ones.
                for rule, check, constraint in customs:
                    if not check(constraint, value):
                        errors.append(((*path, key), rule))
                return
            if included is not None:
                if not isinstance(value, included):
                    errors.append(((*path, key), "type"))
                    return
            elif type_answers is not None and not type_answers.get(value.__class__, False):
                errors.append(((*path, key), "type"))
                return
            if has_empty and isinstance(value, _SIZED) and not value:
                # An empty value skips allowed, forbidden, lengths and regex.
                if not empty_ok:
                    errors.append(((*path, key), "empty"))
            else:
                if allowed is not None and not allowed(value):
                    errors.append(((*path, key), "allowed"))
                if forbidden is not None and forbidden(value):
                    errors.append(((*path, key), "forbidden"))
                if minlength is not None and isinstance(value, _SIZED) and len(value) < minlength:
                    errors.append(((*path, key), "minlength"))
                if maxlength is not None and isinstance(value, _SIZED) and len(value) > maxlength:
                    errors.append(((*path, key), "maxlength"))
                if regex is not None and isinstance(value, str) and regex(value) is None:
                    errors.append(((*path, key), "regex"))
            if low is not None:
                # Cerberus ignores a comparison that raises TypeError (text against a
                # number): decided without raising for the common numeric bounds.
                if low_numeric:
                    if isinstance(value, _NUMBERS) and value < low:
                        errors.append(((*path, key), "min"))
                elif _compares(value, low, operator.lt):
                    errors.append(((*path, key), "min"))
            if high is not None:
                if high_numeric:
                    if isinstance(value, _NUMBERS) and value > high:
                        errors.append(((*path, key), "max"))
                elif _compares(value, high, operator.gt):
                    errors.append(((*path, key), "max"))
            for rule, check, constraint in customs:
                if not check(constraint, value):
                    errors.append(((*path, key), rule))
            if containers and isinstance(value, _CONTAINERS):
                for step in containers:
                    step(value, path, key, errors)

        return check_field

    def container_step(
        self, rule: str, constraint: Any, rules: Mapping[str, Any], allow_unknown: bool, require_all: bool
    ) -> Step:
        if rule == "schema":
            return self.schema_step(constraint, rules, allow_unknown, require_all)
        if not isinstance(constraint, Mapping):
            raise NotCompilable("rules-set references are not compiled")
        inner = self.field(constraint, allow_unknown, require_all)
        return _keys_step(inner) if rule == "keysrules" else _values_step(inner)

    def schema_step(
        self, constraint: Any, rules: Mapping[str, Any], allow_unknown: bool, require_all: bool
    ) -> Step:
        # Cerberus reads ``schema`` as item rules for a list value and as field
        # rules for a dict value; compile whichever the type rule lets through.
        items: FieldCheck | None = None
        fields: MappingCheck | None = None
        if self.admits(rules, list):
            if not isinstance(constraint, Mapping):
                raise NotCompilable("schema references are not compiled")
            items = self.field(constraint, allow_unknown, require_all)
        if self.admits(rules, dict):
            fields = self.mapping(
                constraint,
                rules.get("allow_unknown", allow_unknown),
                rules.get("require_all", require_all),
            )

        def schema(value: Any, path: Path, key: Any, errors: Errors) -> None:
            if isinstance(value, list):
                if items is not None:
                    inner = (*path, key)
                    for index, item in enumerate(value):
                        items(item, inner, index, errors)
            elif isinstance(value, dict) and fields is not None:
                fields(value, (*path, key), errors)

        return schema


def _compares(value: Any, bound: Any, compare: Callable[[Any, Any], Any]) -> bool:
    try:
        return bool(compare(value, bound))
    except TypeError:
        return False


def _allowed_test(allowed: Any) -> Callable[[Any], bool]:
    try:
        members: Any = frozenset(allowed)
    except TypeError:
        members = allowed

    def member(item: Any) -> bool:
        try:
            return item in members
        except TypeError:  # an unhashable item: Cerberus compares with == over the list
            return item in allowed

    def test(value: Any) -> bool:
        # Cerberus checks every item of a list (every key of a dict) against the list.
        if isinstance(value, (list, dict)):
            return all(member(item) for item in value)
        return member(value)

    return test


def _forbidden_test(forbidden: Any) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if isinstance(value, list):
            # As in Cerberus: unhashable items raise TypeError (the stage refuses the document).
            return bool(set(value) & set(forbidden))
        return value in forbidden

    return test


def _regex_test(pattern: Any) -> Callable[[str], Any]:
    if not isinstance(pattern, str):
        raise NotCompilable("regex must be a string")
    # Cerberus anchors the end itself and matches from the start.
    try:
        return re.compile(pattern if pattern.endswith("$") else pattern + "$").match
    except re.error as exc:
        raise NotCompilable(f"invalid regex: {exc}") from None


def _keys_step(inner: FieldCheck) -> Step:
    def check_keys(value: Any, path: Path, key: Any, errors: Errors) -> None:
        if isinstance(value, dict):
            here = (*path, key)
            for name in value:
                inner(name, here, name, errors)

    return check_keys


def _values_step(inner: FieldCheck) -> Step:
    def check_values(value: Any, path: Path, key: Any, errors: Errors) -> None:
        if isinstance(value, dict):
            here = (*path, key)
            for name, item in value.items():
                inner(item, here, name, errors)

    return check_values


def compile_schema(
    schema: Mapping[str, Any],
    *,
    allow_unknown: bool,
    require_all: bool,
    validator_cls: type[cerberus.Validator],
    rules: Mapping[str, Rule],
) -> MappingCheck:
    """Compile an *expanded* Cerberus schema (``Validator(...).schema``); raise ``NotCompilable``."""
    return _Compiler(validator_cls, rules).mapping(schema, allow_unknown, require_all)
