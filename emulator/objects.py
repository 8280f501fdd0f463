"""Object skeletons: every field the pinned SDK knows for an object type, null by default.

Stripe's responses carry every field of an object, with null where it does not apply. The SDK's
typed resource classes (`stripe.PaymentIntent`, ...) list those fields for its API version, so the
emulator takes its field lists from them instead of keeping its own copy.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from stripe._object_classes import OBJECT_CLASSES


@cache
def fields_of(object_name: str) -> tuple[str, ...]:
    module_name, class_name = OBJECT_CLASSES[object_name]
    cls = getattr(importlib.import_module(module_name), class_name)
    annotations = cls.__dict__.get("__annotations__", {})
    return tuple(
        name
        for name, hint in annotations.items()
        if name.islower() and name != "deleted" and "ClassVar" not in str(hint)
    )


def blank(object_name: str, **values: Any) -> dict[str, Any]:
    """A new object with all of its fields: null except `object`, `livemode` and `values`."""
    obj: dict[str, Any] = dict.fromkeys(fields_of(object_name))
    obj["object"] = object_name
    if "livemode" in obj:
        obj["livemode"] = False
    if "metadata" in obj:
        obj["metadata"] = {}
    obj.update(values)
    return obj
