"""How our values become legal Azure Table keys and properties.

Keys: PartitionKey/RowKey may not hold `/ \\ # ?` or control characters and are limited to 1 KiB.
ARM ids are full of `/`, are case-insensitive and can be long, so `key_part` makes a readable,
reversible-enough, collision-safe form:

* lower-case (ARM treats ids case-insensitively, so `MyRG` and `myrg` must be one finding);
* `/` becomes `:` and a leading separator is dropped
  (`/subscriptions/S/resourceGroups/my.rg_(1)` -> `subscriptions:s:resourcegroups:my.rg_(1)`);
* anything outside `[a-z0-9._()-:]` (including `~`, `|`, `#`, `?`, `\\`, spaces, non-ASCII, control
  characters) becomes `~hh` per UTF-8 byte, so no two inputs that differ after lower-casing collide
  (`:` in the input is escaped too, so only a `/` can produce one);
* a part longer than `MAX_PART` keeps a readable head and ends in `~h<sha256>` of the whole form.

`|` is never produced by `key_part`, so it safely joins parts into composite keys.

Properties: a string property holds at most 64 KiB (32K UTF-16 code units) and an entity at most
1 MiB. Evidence and remediation are kept as JSON cut to a budget with a visible marker, and
payloads larger than one property are split over numbered properties (`split_property`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

SEPARATOR = "|"
MAX_PART = 300
MAX_KEY = 1024
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._()-")
_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")

# Leave headroom under the 32,768 UTF-16 units a string property may hold.
PROPERTY_BUDGET = 30_000
TRUNCATION_MARKER = "…[truncated]"


def key_part(value: str) -> str:
    """A lower-case, `/`-free, length-bounded key component for `value` (see module doc)."""
    text = value.strip().lower().lstrip("/")
    out: list[str] = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        elif ch == "/":
            out.append(":")
        else:
            out.extend(f"~{b:02x}" for b in ch.encode("utf-8"))
    encoded = "".join(out) or "~"
    if len(encoded) <= MAX_PART:
        return encoded
    digest = hashlib.sha256(encoded.encode("ascii")).hexdigest()[:32]
    return f"{encoded[: MAX_PART - 35]}~h{digest}"


def join_key(*parts: str) -> str:
    """A composite key of already-encoded parts; refuses anything Azure would reject."""
    key = SEPARATOR.join(parts)
    check_key(key)
    return key


def check_key(key: str) -> None:
    if len(key.encode("utf-8")) > MAX_KEY:
        raise ValueError(f"table key longer than {MAX_KEY} bytes: {key[:80]}...")
    if _FORBIDDEN.search(key):
        raise ValueError(f"table key contains a character Azure Tables forbid: {key[:80]!r}")


def odata_literal(value: str) -> str:
    """A quoted OData string literal (single quotes doubled), for hand-built filters."""
    return "'" + value.replace("'", "''") + "'"


def utf16_units(text: str) -> int:
    """How Azure measures string properties: UTF-16 code units, not Python code points."""
    return len(text.encode("utf-16-le")) // 2


def truncate_text(text: str, budget: int = PROPERTY_BUDGET) -> str:
    """`text` cut to `budget` UTF-16 units, with a marker saying it was cut."""
    if utf16_units(text) <= budget:
        return text
    keep = budget - utf16_units(TRUNCATION_MARKER)
    cut = text[:keep]
    while utf16_units(cut) > keep:  # astral characters count twice
        cut = cut[:-1]
    return cut + TRUNCATION_MARKER


def fit_json_list(items: Sequence[Any], budget: int = PROPERTY_BUDGET,
                  omitted_marker: Mapping[str, Any] | str | None = None) -> str:
    """JSON for `items` within `budget`: long strings are cut, trailing items dropped with a marker.

    The marker is an extra element (by default a string, or `omitted_marker` with `{n}` filled in)
    so readers still get valid JSON of the same shape and a person sees that something is missing.
    """
    per_item = max(200, budget // max(1, min(len(items), 4)) - 200)
    sizes: list[int] = []
    encoded: list[str] = []
    for item in items:
        text = _dumps(_shrink(item, per_item))
        encoded.append(text)
        sizes.append(utf16_units(text))
    used = 2  # the brackets
    for index, size in enumerate(sizes):
        remaining = len(sizes) - index - 1
        tail = utf16_units(_dumps(_marker(omitted_marker, remaining))) + 1 if remaining else 0
        if used + size + 1 + tail > budget:
            kept = [*encoded[:index], _dumps(_marker(omitted_marker, len(sizes) - index))]
            return "[" + ",".join(kept) + "]"
        used += size + 1
    return "[" + ",".join(encoded) + "]"


def _marker(template: Mapping[str, Any] | str | None, omitted: int) -> Any:
    text = f"{TRUNCATION_MARKER} {omitted} more item(s) omitted to fit Azure Table limits"
    if template is None:
        return text
    if isinstance(template, str):
        return template.format(n=omitted)
    return {k: (v.format(n=omitted) if isinstance(v, str) else v) for k, v in template.items()}


def _shrink(item: Any, budget: int) -> Any:
    if isinstance(item, str):
        return truncate_text(item, budget)
    if isinstance(item, Mapping):
        share = max(100, budget // max(1, len(item)))
        return {str(k): _shrink(v, share) for k, v in item.items()}
    if isinstance(item, list | tuple):
        return [_shrink(v, max(100, budget // max(1, len(item)))) for v in item]
    return item


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def split_property(name: str, text: str, budget: int = PROPERTY_BUDGET) -> dict[str, Any]:
    """`text` spread over `name_0`, `name_1`... each within a property's limit, plus `name_parts`."""
    chunks: list[str] = []
    rest = text
    while rest:
        take = min(len(rest), budget // 2)  # a code point is at most two UTF-16 units
        chunks.append(rest[:take])
        rest = rest[take:]
    entity: dict[str, Any] = {f"{name}_{i}": chunk for i, chunk in enumerate(chunks)}
    entity[f"{name}_parts"] = len(chunks)
    return entity


def join_property(entity: Mapping[str, Any], name: str) -> str:
    parts = int(entity.get(f"{name}_parts", 0))
    return "".join(str(entity[f"{name}_{i}"]) for i in range(parts))
