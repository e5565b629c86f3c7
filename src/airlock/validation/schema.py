"""A Cerberus schema checked once at start-up, then run on the fastest path that gives Cerberus's answer.

``Schema`` builds a reference Cerberus validator (so a bad schema fails at
start-up with Cerberus's own message), then tries to compile the schema
(:mod:`airlock.validation.compiler`). Documents run on the compiled closures when
that worked, on Cerberus otherwise, without normalisation unless the schema has
normalisation rules (``coerce``, ``default``, ``rename``...), in which case the
normalised document is what the route receives.

Errors come back as ``(path, rule)`` pairs: never Cerberus's messages, which quote
the submitted values.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path as FilePath
from typing import Any, NamedTuple

import cerberus
from cerberus import errors as cerberus_errors

from airlock.errors import ConfigurationError
from airlock.validation.compiler import Errors, MappingCheck, NotCompilable, Path, compile_schema
from airlock.validation.rules import registered_rules, validator_class

__all__ = ["Outcome", "Schema", "flatten_errors", "load_schema", "render_errors"]

_UNKNOWN_CODE = cerberus_errors.UNKNOWN_FIELD.code
# Keys that come from the client are shown only when they look like field names;
# anything else (an e-mail address used as a key, say) is replaced by "*".
_SHOWN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


class Outcome(NamedTuple):
    errors: Errors
    document: dict[str, Any]


def flatten_errors(found: Iterable[Any]) -> Errors:
    """Cerberus's error tree as ``(path, rule)`` leaves.

    Group errors (``schema``, ``keysrules``, ``valuesrules``, ``items``) are
    replaced by the errors inside them; a failed ``anyof``/``oneof``/``allof``/
    ``noneof`` is one error at its own path (its inner errors belong to
    alternatives, not to the document).
    """
    result: Errors = []
    stack = list(found)
    while stack:
        error = stack.pop()
        if error.is_group_error and not error.is_logic_error:
            stack.extend(error.child_errors)
            continue
        rule = error.rule
        if rule is None:
            rule = "unknown" if error.code == _UNKNOWN_CODE else "custom"
        result.append((tuple(error.document_path), rule))
    return result


def _sort_key(item: tuple[Path, str]) -> tuple[tuple[tuple[int, Any], ...], str]:
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in item[0]), item[1]


def _show(part: Any) -> str:
    if isinstance(part, int):
        return str(part)
    if isinstance(part, str) and _SHOWN_KEY.fullmatch(part):
        return part
    return "*"


def render_errors(errors: Errors, limit: int) -> list[dict[str, str]]:
    """Up to ``limit`` errors as ``{"path": "messages.3.role", "rule": "allowed"}``, sorted."""
    ordered = sorted(errors, key=_sort_key)[:limit]
    return [{"path": ".".join(_show(part) for part in path), "rule": rule} for path, rule in ordered]


def _has_normalization(rules_set: Any, names: frozenset[str]) -> bool:
    """True when any rules set in the schema normalises (or cannot be inspected)."""
    stack: list[Any] = [rules_set]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            return True  # a registry reference: assume it may normalise
        if not isinstance(node, Mapping):
            continue
        if names.intersection(node):
            return True
        for rule in ("schema", "keysrules", "valuesrules", "allow_unknown"):
            inner = node.get(rule)
            if isinstance(inner, Mapping):
                # ``schema`` is either one rules set or a mapping of field -> rules set.
                stack.append(inner)
                stack.extend(v for v in inner.values() if isinstance(v, Mapping))
        for rule in ("anyof", "allof", "noneof", "oneof", "items"):
            inner = node.get(rule)
            if isinstance(inner, list):
                stack.extend(inner)
    return False


class Schema:
    """A Cerberus schema with its fast path.

    :param schema: a Cerberus schema (mapping of field -> rules).
    :param allow_unknown: accept fields the schema does not name (default: refuse them).
    :param require_all: every field the schema names is required.
    :param compiled: use the compiled fast path when the schema allows it (``False``
        forces plain Cerberus, e.g. for comparison).
    """

    def __init__(
        self,
        schema: Mapping[str, Any],
        *,
        allow_unknown: bool = False,
        require_all: bool = False,
        compiled: bool = True,
    ) -> None:
        if not isinstance(schema, Mapping):
            raise ConfigurationError("a Cerberus schema is a mapping of field names to rules")
        if not isinstance(allow_unknown, bool) or not isinstance(require_all, bool):
            raise ConfigurationError("allow_unknown and require_all must be booleans")
        self._cls = validator_class()
        # Cerberus expands schemas in place; keep the caller's dict untouched.
        self._definition = copy.deepcopy(dict(schema))
        self._options = {"allow_unknown": allow_unknown, "require_all": require_all}
        try:
            reference = self._cls(copy.deepcopy(self._definition), **self._options)
        except cerberus.SchemaError as exc:
            raise ConfigurationError(f"invalid Cerberus schema: {exc}") from None
        expanded = reference.schema.schema
        self.normalizes = _has_normalization({"schema": expanded}, frozenset(self._cls.normalization_rules))
        self._local = threading.local()
        self._local.validator = reference
        self._fast: MappingCheck | None = None
        self.not_compiled_reason: str | None = None
        if compiled and not self.normalizes:
            try:
                self._fast = compile_schema(
                    expanded,
                    allow_unknown=allow_unknown,
                    require_all=require_all,
                    validator_cls=self._cls,
                    rules=registered_rules(),
                )
            except NotCompilable as exc:
                self.not_compiled_reason = str(exc)
        elif self.normalizes:
            self.not_compiled_reason = "the schema normalises documents"

    @property
    def compiled(self) -> bool:
        """Whether documents run on the compiled fast path."""
        return self._fast is not None

    def __repr__(self) -> str:
        return f"<airlock.validation.Schema fields={len(self._definition)} compiled={self.compiled}>"

    def _validator(self) -> cerberus.Validator:
        # Cerberus validators keep per-call state; one per thread keeps them independent.
        validator: cerberus.Validator | None = getattr(self._local, "validator", None)
        if validator is None:
            validator = self._cls(copy.deepcopy(self._definition), **self._options)
            self._local.validator = validator
        return validator

    def validate(self, document: dict[str, Any]) -> Outcome:
        """Check a JSON object; return its errors and the (normalised) document."""
        fast = self._fast
        if fast is not None:
            errors: Errors = []
            fast(document, (), errors)
            return Outcome(errors, document)
        return self.validate_with_cerberus(document)

    def validate_with_cerberus(self, document: dict[str, Any]) -> Outcome:
        """Check a JSON object on plain Cerberus (no fast path)."""
        validator = self._validator()
        validator.validate(document, normalize=self.normalizes)
        errors = flatten_errors(validator._errors)
        result = validator.document if self.normalizes else document
        return Outcome(errors, result)


def load_schema(path: str | FilePath) -> dict[str, Any]:
    """Read a Cerberus schema from a ``.json`` or ``.yaml``/``.yml`` file."""
    file = FilePath(path)
    suffix = file.suffix.lower()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read schema {str(file)!r}: {exc.strerror}") from None
    if suffix == ".json":
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"schema {str(file)!r} is not valid JSON: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            yaml = importlib.import_module("yaml")  # optional: the "yaml" extra
        except ImportError:
            raise ConfigurationError("YAML schemas need PyYAML: pip install 'asgi-airlock[yaml]'") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"schema {str(file)!r} is not valid YAML: {exc}") from None
    else:
        raise ConfigurationError(f"schema {str(file)!r}: use a .json, .yaml or .yml file")
    if not isinstance(loaded, dict):
        raise ConfigurationError(f"schema {str(file)!r} must hold a mapping of field names to rules")
    return loaded
