"""Stripe's test cards: the `pm_card_*` tokens and card numbers, and how each one behaves.

No real card data exists here: these are Stripe's published test numbers. A payment method made
from one keeps the card's name in hidden state, so a later confirmation knows how it behaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator.errors import StripeError, invalid_request, not_found
from emulator.ids import new_id
from emulator.objects import blank

if TYPE_CHECKING:
    from emulator.context import Ctx


@dataclass(frozen=True, slots=True)
class TestCard:
    name: str  # the token without `pm_card_`
    number: str
    brand: str
    funding: str = "credit"
    country: str = "US"
    decline_code: str | None = None  # a decline at confirmation
    requires_action: bool = False  # 3-D Secure on every payment
    settles_later: bool = False  # emulator-only: the payment stays `processing` until settled
    attaches: bool = False  # a declining card that still attaches (its charges decline later)

    @property
    def refused_on_attach(self) -> bool:
        """Whether attaching it to a customer fails, as Stripe's card check does."""
        return self.decline_code is not None and not self.attaches

    @property
    def token(self) -> str:
        return f"pm_card_{self.name}"

    @property
    def last4(self) -> str:
        return self.number[-4:]


CARDS = (
    TestCard("visa", "4242424242424242", "visa"),
    TestCard("visa_debit", "4000056655665556", "visa", funding="debit"),
    TestCard("mastercard", "5555555555554444", "mastercard"),
    TestCard("amex", "378282246310005", "amex"),
    TestCard("chargeDeclined", "4000000000000002", "visa", decline_code="generic_decline"),
    TestCard(
        "chargeDeclinedInsufficientFunds",
        "4000000000009995",
        "visa",
        decline_code="insufficient_funds",
    ),
    # Attaching succeeds; every charge declines (a renewal that fails).
    TestCard(
        "chargeCustomerFail",
        "4000000000000341",
        "visa",
        decline_code="generic_decline",
        attaches=True,
    ),
    TestCard("authenticationRequired", "4000002760003184", "visa", requires_action=True),
    # Not a Stripe card: Stripe's cards never stay `processing`, this one does until the
    # `/_emulator/payment_intents/{intent}/settle` control finishes it.
    TestCard("delayedSettlement", "4000000000000762", "visa", settles_later=True),
)
BY_TOKEN = {card.token: card for card in CARDS}
BY_NUMBER = {card.number: card for card in CARDS}
BY_LEGACY_TOKEN = {f"tok_{card.name}": card for card in CARDS}

DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}

BRAND_NAMES = {"visa": "Visa", "mastercard": "MasterCard", "amex": "American Express"}


def card_error(card: TestCard, **extra: Any) -> StripeError:
    """The 402 a decline raises, with Stripe's code, decline code and message."""
    code = card.decline_code or "generic_decline"
    return StripeError(
        402,
        "card_error",
        DECLINE_MESSAGES.get(code, "Your card was declined."),
        code="card_declined",
        decline_code=code,
        **extra,
    )


def card_details(card: TestCard, now: int) -> dict[str, Any]:
    """The `card` hash of a card payment method."""
    return {
        "brand": card.brand,
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "unchecked",
        },
        "country": card.country,
        "display_brand": card.brand,
        "exp_month": 12,
        "exp_year": 2030 if now < 1893456000 else 2040,
        "fingerprint": card.number[-8:][::-1] + card.brand[:8],
        "funding": card.funding,
        "generated_from": None,
        "last4": card.last4,
        "networks": {"available": [card.brand], "preferred": None},
        "regulated_status": "unregulated",
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
    }


def create_card_payment_method(
    ctx: Ctx,
    card: TestCard,
    *,
    billing_details: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Store a new, unattached card PaymentMethod for a test card and return it."""
    details = {"address": None, "email": None, "name": None, "phone": None, "tax_id": None}
    if billing_details:
        details.update(billing_details)
    pm = blank(
        "payment_method",
        id=new_id("pm"),
        allow_redisplay="unspecified",
        billing_details=details,
        card=card_details(card, ctx.now()),
        created=ctx.now(),
        customer=None,
        metadata=metadata or {},
        type="card",
    )
    ctx.coll("payment_method").add(pm)
    ctx.store.hidden_of(pm["id"])["card"] = card.name
    return pm


def card_by_name(name: str) -> TestCard:
    return next(card for card in CARDS if card.name == name)


def card_of(ctx: Ctx, pm: dict[str, Any]) -> TestCard:
    """The test card behind a payment method (the Visa success card if it has none recorded)."""
    name = ctx.store.hidden_of(pm["id"]).get("card")
    return card_by_name(name) if name else CARDS[0]


def resolve_payment_method(ctx: Ctx, ref: str, *, param: str = "payment_method") -> dict[str, Any]:
    """A payment method from an id or a test token; a token makes a new `pm_…`, as Stripe does."""
    card = BY_TOKEN.get(ref)
    if card is not None:
        return create_card_payment_method(ctx, card)
    if ref.startswith("pm_"):
        pm = ctx.coll("payment_method").find(ref)
        if pm is None:
            raise not_found("PaymentMethod", ref, param=param)
        return pm
    raise invalid_request(f"No such PaymentMethod: '{ref}'", param=param, code="resource_missing")
