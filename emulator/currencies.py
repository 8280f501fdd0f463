"""Currencies as Stripe charges them: minor units, zero- and three-decimal ones, minimum amounts."""

from __future__ import annotations

from emulator.errors import invalid_request

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
SUPPORTED = ZERO_DECIMAL | THREE_DECIMAL | frozenset(_TWO_DECIMAL.split())
# Stripe's minimum charge per currency, in minor units; others default to 50 minor units.
MINIMUM = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
    "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000,
    "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}  # fmt: skip
MAXIMUM = 99_999_999
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "$", "aud": "$"}


def checked_currency(value: str, param: str = "currency") -> str:
    currency = value.lower()
    if currency not in SUPPORTED:
        raise invalid_request(
            f"Invalid currency: {value}. Stripe currently supports these currencies: "
            + ", ".join(sorted(SUPPORTED)),
            param=param,
        )
    return currency


def decimals(currency: str) -> int:
    if currency in ZERO_DECIMAL:
        return 0
    return 3 if currency in THREE_DECIMAL else 2


def format_amount(amount: int, currency: str) -> str:
    """`$0.50`, `¥50`, `1.000 kwd`: how Stripe writes an amount in its messages."""
    places = decimals(currency)
    number = f"{amount / 10**places:,.{places}f}" if places else f"{amount:,}"
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{number} {currency}"


def check_charge_amount(amount: int, currency: str, param: str = "amount") -> None:
    """Stripe's limits on a charge amount: the currency's minimum and 99,999,999 minor units."""
    minimum = MINIMUM.get(currency, 50)
    if amount < minimum:
        raise invalid_request(
            f"Amount must be at least {format_amount(minimum, currency)} {currency}",
            param=param,
            code="amount_too_small",
        )
    if amount > MAXIMUM:
        raise invalid_request(
            f"Amount must be no more than {format_amount(MAXIMUM, currency)}",
            param=param,
            code="amount_too_large",
        )
    if currency in THREE_DECIMAL and amount % 10 != 0:
        raise invalid_request(
            f"Invalid amount: {currency} amounts must be rounded to the nearest ten "
            "(the last digit must be 0).",
            param=param,
            code="invalid_charge_amount",
        )
