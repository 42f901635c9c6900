"""The `Redactor`: text, nested values and whole models in, the same with every credential replaced.

`sanitize(model)` is the one function the store calls on everything it is about to persist. It walks the
model's fields generically (every field, every nested model, dict key and value, list item), so a field
added to a model later is covered without anyone remembering to list it here.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

from ..errors import ConfigError
from .decode import _JSON_ESCAPES, _PERCENT, views
from .detectors import (
    _PLACEHOLDER_RE,
    Finding,
    _merge,
    _Rule,
    _value_is_secret,
    classify_key,
    may_hold_secret,
    parse_user_pattern,
    placeholder,
    scan,
)

T = TypeVar("T")
_BREAKS = re.compile(r"\n[ \t]*")


def _all_joined(text: str) -> str:
    """`text` with every line joined (and every `\\`, `\r` dropped): a superset of decode's wrap view."""
    joined = _BREAKS.sub("", text)
    return joined.replace("\r", "").replace("\\", "") if "\r" in joined or "\\" in joined else joined


_ATOMS = (bool, int, float, Enum, datetime, date, time, timedelta, bytes, type(None))


def _surely_clean(text: str) -> bool:
    """True when no built-in detector can fire on `text` or on any decoded view of it: nothing to decode but
    wrapped lines, and not even with every line joined does the text pass the precheck. The common case (clean
    prose and logs) stops after these few cheap looks.

    Every look is a search for a pattern with no anchors, or a substring test, and `_all_joined` of a text
    joined with NUL is the NUL-join of each part's: so a text made by joining strings with NUL is clean only if
    each string is (`sanitize` relies on this to look at a whole entry at once)."""
    return (not may_hold_secret(text) and _JSON_ESCAPES.search(text) is None and _PERCENT.search(text) is None
            and ("\n" not in text or not may_hold_secret(_all_joined(text))))


def _gather(obj: Any, out: list[str]) -> bool:
    """Append to `out` every string `Redactor._value` would redact in `obj`, walked the same way. False where the
    walk depends on more than a string's own text (a secret-named key or field, a `str` subclass): then only
    the full walk can say what changes."""
    t = type(obj)
    if t is str:
        out.append(obj)
        return True
    if t in _EXACT_ATOMS or isinstance(obj, _ATOMS):
        return True
    if isinstance(obj, str):
        return False
    if isinstance(obj, BaseModel):
        for _, kind, value in _fields(obj):
            if kind is not None:  # a secret-named field: only what the walk skips unlooked is skipped here
                if (type(value) in _EXACT_ATOMS or isinstance(value, _ATOMS)) and not isinstance(value, int | float):
                    continue
                return False
            if not _gather(value, out):
                return False
        return True
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                if type(k) is not str or _key_kind(k) is not None:
                    return False
                out.append(k)
            if not _gather(v, out):
                return False
        return True
    if isinstance(obj, list | tuple | set | frozenset):
        return all(_gather(v, out) for v in obj)
    return True  # anything else `_value` returns as it is


_MAX_PASSES = 8  # each pass that finds something replaces at least one span; 8 is far past any seen


class Redactor:
    """Finds credentials in text and replaces them with `[REDACTED:<type>]`. Thread-safe, stateless.

    `patterns` are the user's extra regexes from `[redact] patterns = [...]`; each may be `name=regex`.
    """

    def __init__(self, patterns: list[str] | None = None) -> None:
        self._user_rules: list[_Rule] = [parse_user_pattern(p) for p in (patterns or [])]

    @classmethod
    def from_config(cls, section: Any) -> Redactor:
        """Build from the `[redact]` config section (`Config.redact`, or a plain mapping)."""
        if isinstance(section, BaseModel):
            section = section.model_dump()
        section = section or {}
        patterns = section.get("patterns") or [] if isinstance(section, Mapping) else None
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ConfigError('[redact] patterns must be a list of strings, e.g. ["acme-key=ACME-[0-9a-f]{32}"]')
        return cls(patterns)

    # ---------------------------------------------------------------------------------------- text
    def find(self, text: str, *, precheck: bool = True) -> list[Finding]:
        """All secrets in `text`, in the text as it is and in every decoded view of it (JSON-escaped, doubly
        escaped, percent-encoded, wrapped across lines), as merged ranges of `text`.

        `precheck=False` runs every detector (for tests).
        """
        if precheck and not self._user_rules and _surely_clean(text):
            return []
        found = scan(text, self._user_rules, precheck=precheck)
        decoded_any = False
        raw_may = None
        for view in views(text):
            if view.joins and precheck and view.parent is not None and view.parent.parent is None:
                # Joining wrapped lines changes the text only around the joins. If nothing in the text
                # passes the precheck, a secret can only appear across a join: look there first.
                raw_may = may_hold_secret(text) if raw_may is None else raw_may
                if not (raw_may or self._user_rules or may_hold_secret("\n\n".join(view.around_changes()))):
                    continue
            for f in scan(view.text, self._user_rules, precheck=precheck):
                start, end = view.span(f.start, f.end)
                found.append(Finding(f.type, start, end, f.priority))
                decoded_any = True
        return _merge(found) if decoded_any else found

    def redact(self, text: str) -> str:
        """`text` with every credential replaced by its typed placeholder; the same object if none is found.

        The result is a fixed point: redacting it again changes nothing. A placeholder ends with `]`, a
        boundary the replaced text may not have had (`-----BEGIN … KEY-------password x`: the CLI-flag
        detector needs a boundary before `--password`), so a replacement can expose a secret the first pass
        could not see. Passes repeat until nothing more is found; only text that held a secret pays.
        """
        if not text:
            return text
        for _ in range(_MAX_PASSES):
            findings = self.find(text)
            if not findings:
                return text
            parts: list[str] = []
            pos = 0
            for f in findings:
                parts.append(text[pos : f.start])
                parts.append(placeholder(f.type))
                pos = f.end
            parts.append(text[pos:])
            text = "".join(parts)
        return text

    # --------------------------------------------------------------------------------------- values
    def redact_value(self, obj: Any) -> Any:
        """Redact strings anywhere in dicts/lists/tuples/models; a value under a secret-named key is replaced
        whole. `{"password": "hunter2"}` has no `password=` in any one string, so keys give the context.

        Anything unchanged is returned as the same object (cheap, and keeps identity).
        """
        return self._value(obj, None)

    def sanitize(self, model: T) -> T:
        """`model` (any pydantic model, or plain data) with every string in it redacted: the store's one
        choke point for secrets. The same object when nothing changed."""
        if not self._user_rules:
            texts: list[str] = []
            if _gather(model, texts) and _surely_clean("\x00".join(texts)):
                return model  # what the walk below would return: no string in it can change
        result: T = self._value(model, None)
        return result

    def redact_draft(self, draft: T) -> T:
        """Kept for old callers: the same as `sanitize`."""
        return self.sanitize(draft)

    def _value(self, obj: Any, key_kind: str | None) -> Any:
        t = type(obj)
        if t is str:  # most leaves: tested first, before the walk through every other type
            return self._str(obj, key_kind)
        if t in _EXACT_ATOMS or isinstance(obj, _ATOMS):
            if key_kind is not None and isinstance(obj, int | float) and not isinstance(obj, bool | Enum):
                return placeholder(key_kind) if _value_is_secret(key_kind, str(obj)) else obj
            return obj
        if isinstance(obj, str):  # a str subclass
            return self._str(obj, key_kind)
        if isinstance(obj, BaseModel):
            return self._model(obj)
        if isinstance(obj, dict):
            changed = False
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                # Under a secret-named key everything is the secret, however it is nested:
                # `{"password": {"value": "…"}}` inherits the outer key's kind.
                kind = (_key_kind(k) if isinstance(k, str) else None) or key_kind
                nk = self._value(k, None) if isinstance(k, str) else k
                nv = self._value(v, kind)
                changed = changed or nk is not k or nv is not v
                out[nk] = nv
            return out if changed else obj
        if isinstance(obj, list | tuple | set | frozenset):
            items = [self._value(v, key_kind) for v in obj]
            if all(a is b for a, b in zip(items, obj, strict=True)):
                return obj
            return type(obj)(items)
        return obj

    def _str(self, obj: str, key_kind: str | None) -> str:
        red = self.redact(obj)
        if key_kind is None or not _value_is_secret(key_kind, obj):
            return red
        if _PLACEHOLDER_RE.fullmatch(red):
            return red
        return placeholder(key_kind)

    def _model(self, model: BaseModel) -> BaseModel:
        """Every field (declared and extra) of a pydantic model, walked like a dict keyed by field name."""
        update: dict[str, Any] = {}
        for name, kind, value in _fields(model):
            t = type(value)
            atom = t in _EXACT_ATOMS or isinstance(value, _ATOMS)
            if atom and (kind is None or not isinstance(value, int | float)):
                continue  # fast path: most fields are ids, enums, times; a number only under a secret key
            new = self._value(value, kind)
            if new is not value:
                update[name] = new
        return model.model_copy(update=update) if update else model


# The walk's fixed costs, paid once per model class and per key instead of once per value: which declared
# fields a model has and what kind of secret each field's *name* implies. Everything is still walked; only
# the bookkeeping around it is cached.
_plans: dict[type[BaseModel], tuple[tuple[str, str | None], ...]] = {}
_EXACT_ATOMS = frozenset({bool, int, float, type(None), datetime, date, time, timedelta, bytes})


def _field_plan(cls: type[BaseModel]) -> tuple[tuple[str, str | None], ...]:
    plan = _plans.get(cls)
    if plan is None:
        plan = _plans[cls] = tuple((name, classify_key(name)) for name in cls.model_fields)
    return plan


def _fields(model: BaseModel) -> list[tuple[str, str | None, Any]]:
    """(name, secret kind the name implies, value) of every field of `model`, declared and extra: what both the
    walk and `_gather` look at, so the shortcut never sees fewer fields than the walk."""
    plan = _field_plan(type(model))
    if model.model_extra:
        plan += tuple((name, _key_kind(name)) for name in model.model_extra)
    values = model.__dict__
    return [(name, kind, values[name] if name in values else getattr(model, name, None)) for name, kind in plan]


def _key_kind(key: str) -> str | None:
    """`classify_key`, cached for short keys: the same few keys (field names, JSON keys) come back on every
    entry. Long keys are classified afresh, so keys chosen to be large cannot fill the cache's memory."""
    return _short_key_kind(key) if len(key) <= 64 else classify_key(key)


@functools.lru_cache(maxsize=4096)
def _short_key_kind(key: str) -> str | None:
    return classify_key(key)


_default: Redactor | None = None
_default_lock = threading.Lock()


def default_redactor() -> Redactor:
    """The process-wide redactor with the built-in detectors only (no user patterns)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Redactor()
    return _default
