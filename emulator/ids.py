"""Object ids with Stripe's prefixes (`pi_`, `cus_`, `ch_`, ...) and a random base-62 tail."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def secret_for(object_id: str) -> str:
    """A client secret in Stripe's shape: `<id>_secret_<random>`."""
    return f"{object_id}_secret_" + "".join(secrets.choice(_ALPHABET) for _ in range(25))
