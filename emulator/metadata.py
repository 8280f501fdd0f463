"""Metadata as Stripe keeps it: at most 50 keys of 40 characters, values of 500; updates merge."""

from __future__ import annotations

from typing import Any

from emulator.errors import invalid_request

MAX_KEYS = 50
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500


def checked(metadata: Any, param: str = "metadata") -> dict[str, str]:
    """Validated metadata for a new object (`""` means none)."""
    if metadata in (None, ""):
        return {}
    assert isinstance(metadata, dict)
    for key, value in metadata.items():
        if len(key) > MAX_KEY_LENGTH:
            raise invalid_request(
                f"Invalid key: {key} must be a string under {MAX_KEY_LENGTH} characters",
                param=param,
            )
        if len(value) > MAX_VALUE_LENGTH:
            raise invalid_request(
                f"Invalid val: {value[:40]}... must be a string under {MAX_VALUE_LENGTH} "
                "characters",
                param=param,
            )
    kept = {k: v for k, v in metadata.items() if v != ""}
    if len(kept) > MAX_KEYS:
        raise invalid_request(
            f"Metadata can have up to {MAX_KEYS} keys, but you've set {len(kept)}.", param=param
        )
    return kept


def merged(current: dict[str, str], update: Any, param: str = "metadata") -> dict[str, str]:
    """Stripe's metadata update: keys merge, an empty value deletes its key, `""` clears all."""
    if update == "":
        return {}
    combined = {**current, **update}
    return checked({k: v for k, v in combined.items() if update.get(k, v) != ""}, param)
