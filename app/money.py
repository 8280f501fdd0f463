"""Money as Stripe counts it: integers in the currency's minor unit, never floats.

One table of zero- and three-decimal currencies and of Stripe's minimum charge amounts, used to
validate every amount before any Stripe call. (The emulator keeps its own copy: it imitates
Stripe and shares no code with the service.)
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from app.errors import InvalidRequest

MAX_AMOUNT = 99_999_999
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())
_TWO_DECIMAL = """
    usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob brl bsd bwp byn bzd
    cad cdf chf cny cop crc cve czk dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gtq gyd hkd
    hnl htg huf idr ils inr isk jmd kes kgs khr kyd kzt lak lbp lkr lrd lsl mad mdl mkd mmk mnt
    mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd pab pen pgk php pkr pln qar ron rsd rub
    sar sbd scr sek sgd shp sle sos srd std szl thb tjs top try ttd twd tzs uah uyu uzs wst xcd
    yer zar zmw
"""
CURRENCIES = ZERO_DECIMAL | THREE_DECIMAL | frozenset(_TWO_DECIMAL.split())
# Stripe's minimum charge per currency in minor units; other currencies: 50 minor units.
MINIMUM = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
    "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000,
    "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}  # fmt: skip

# Stripe's special cases (docs.stripe.com/currencies#special-cases). ISK is two-decimal in the
# API, but since 2023-04-14 charges and refunds must be whole krónur: multiples of 100. HUF and
# TWD are whole units only for payouts (charges may use two decimals); UGX is zero-decimal.
WHOLE_UNITS_OF = {"isk": 100}

DESCRIPTOR_FORBIDDEN = frozenset("<>\\'\"*")
SUFFIX_MAX = 22

METADATA_MAX_KEYS = 50
METADATA_MAX_KEY = 40
METADATA_MAX_VALUE = 500


def _currency(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().lower()
        if value not in CURRENCIES:
            raise ValueError(f"'{value}' is not a currency Stripe supports (ISO 4217, e.g. 'usd')")
    return value


def _suffix(value: str) -> str:
    if len(value) > SUFFIX_MAX:
        raise PydanticCustomError(
            "statement_descriptor_suffix",
            "must be at most {limit} characters",
            {"limit": SUFFIX_MAX},
        )
    if not any(c.isalpha() for c in value):
        raise PydanticCustomError("statement_descriptor_suffix", "must contain at least one letter")
    if any(c in DESCRIPTOR_FORBIDDEN for c in value):
        raise PydanticCustomError(
            "statement_descriptor_suffix",
            "cannot contain any of these characters: < > \\ ' \" *",
        )
    return value


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(f"at most {METADATA_MAX_KEYS} keys, got {len(value)}")
    for key, item in value.items():
        if not key or len(key) > METADATA_MAX_KEY:
            raise ValueError(f"key '{key[:50]}' must have 1 to {METADATA_MAX_KEY} characters")
        if len(item) > METADATA_MAX_VALUE:
            raise ValueError(f"value of '{key}' is longer than {METADATA_MAX_VALUE} characters")
    return value


# Pydantic field types for request bodies.
Currency = Annotated[str, BeforeValidator(_currency), Field(examples=["usd"])]
Amount = Annotated[
    int,
    Field(
        strict=True,
        gt=0,
        le=MAX_AMOUNT,
        description="A positive integer in the currency's minor unit (1000 = $10.00; ¥500 = 500).",
        examples=[2000],
    ),
]
StatementDescriptorSuffix = Annotated[
    str,
    AfterValidator(_suffix),
    Field(
        description="Shown after the account's statement descriptor prefix: up to 22 "
        "characters, at least one letter, none of < > \\ ' \" *.",
        examples=["PRO SUB"],
    ),
]
Metadata = Annotated[
    dict[str, str], AfterValidator(_metadata), Field(examples=[{"order_id": "6735"}])
]


def check_amount(amount: int, currency: str, param: str = "amount") -> None:
    """Stripe's per-currency limits, checked before Stripe is called."""
    minimum = MINIMUM.get(currency, 50)
    if amount < minimum:
        raise InvalidRequest(
            f"Amount must be at least {minimum} {currency} minor units.",
            code="amount_too_small",
            param=param,
        )
    if amount > MAX_AMOUNT:
        raise InvalidRequest(
            f"Amount must be at most {MAX_AMOUNT} minor units.",
            code="amount_too_large",
            param=param,
        )
    check_units(amount, currency, param)


def check_units(amount: int, currency: str, param: str = "amount") -> None:
    """The currency's granularity: ISK in whole krónur, three-decimal currencies in tens (also
    for refunds and captures, which have no minimum)."""
    whole = WHOLE_UNITS_OF.get(currency)
    if whole and amount % whole:
        raise InvalidRequest(
            f"{currency.upper()} amounts must be whole units: a multiple of {whole} (Stripe "
            f"keeps {currency.upper()} two-decimal in its API but charges whole units only).",
            code="invalid_amount",
            param=param,
        )
    if currency in THREE_DECIMAL and amount % 10:
        raise InvalidRequest(
            f"{currency.upper()} amounts must end in 0 (Stripe rounds three-decimal currencies "
            "to the nearest ten minor units).",
            code="invalid_amount",
            param=param,
        )
