"""The `Stripe-Version` request header: which values the emulator accepts.

Stripe refuses a version it does not know with a 400 `invalid_request_error`, "Invalid Stripe API
version: <value>". The emulator keeps no list of every version Stripe released; it accepts any
value shaped like one that could exist by its own version (`API_VERSION`):

- a date `YYYY-MM-DD` that is a real calendar day, from 2011 (Stripe's oldest versions date
  from 2011) up to and including `API_VERSION`'s date;
- optionally `.name` in lowercase letters: a release name (`acacia`, `basil`, `clover`, ...) or
  `preview`;
- optionally followed by beta flags `; feature=vN`, as Stripe's beta SDKs append them.

So `2024-06-20`, `2025-03-31.basil` and `API_VERSION` itself are accepted; `banana`, `2019-2-19`,
`2024-02-30` and any date after `API_VERSION`'s are refused. A release name is not checked against
its date (`2020-08-27.basil` passes). No header, or an empty one, means the account's default
version: `API_VERSION`.
"""

from __future__ import annotations

import datetime
import re

from emulator.config import API_VERSION
from emulator.errors import StripeError

OLDEST = datetime.date(2011, 1, 1)
NEWEST = datetime.date.fromisoformat(API_VERSION[:10])
_SHAPE = re.compile(r"(\d{4}-\d{2}-\d{2})(\.[a-z]+)?(;\s*[a-z][a-z0-9_]*=v\d+)*")


def is_known(version: str) -> bool:
    """Whether `version` (a `Stripe-Version` header value) names a version the emulator answers."""
    shape = _SHAPE.fullmatch(version)
    if shape is None:
        return False
    try:
        day = datetime.date.fromisoformat(shape.group(1))
    except ValueError:
        return False
    return OLDEST <= day <= NEWEST


def answered(header: str | None) -> str:
    """The version a response names: the one asked for when it is known, else `API_VERSION`."""
    if header and is_known(header):
        return header
    return API_VERSION


def check(header: str | None) -> None:
    """Refuse an unknown version as Stripe does (no header, or an empty one, is the default)."""
    if header and not is_known(header):
        raise StripeError(
            400, "invalid_request_error", f"Invalid Stripe API version: {header[:100]}"
        )
