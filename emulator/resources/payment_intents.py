"""PaymentIntents: create, retrieve, update, confirm, capture, cancel, list and search.

The whole status machine lives here: `requires_payment_method` → `requires_confirmation` →
(`requires_action` for 3-D Secure) → `processing` → `succeeded` / `requires_capture`, a decline
falling back to `requires_payment_method` with `last_payment_error` and a 402 `card_error`, and
`canceled`. Each confirmation makes a Charge (`emulator.resources.charges`).

Other resources call `create_payment_intent` and `confirm_payment_intent` (checkout completion).

Emulator extensions, not in Stripe:
- `POST /_emulator/payment_intents/{intent}/authenticate` with `{"outcome": "succeed"|"fail"}`
  finishes 3-D Secure for an intent in `requires_action`; `GET /_emulator/3ds/{intent}` is the
  page a `redirect_to_url` next action points at (its buttons authenticate and redirect to the
  `return_url` as Stripe does).
- The test card `pm_card_delayedSettlement` (4000000000000762) leaves the intent `processing`
  (its charge `pending`) until `POST /_emulator/payment_intents/{intent}/settle` with
  `{"outcome": "succeed"|"fail"}` settles it.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stripe.params import (
    PaymentIntentCancelParams,
    PaymentIntentCaptureParams,
    PaymentIntentConfirmParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentIntentRetrieveParams,
    PaymentIntentSearchParams,
    PaymentIntentUpdateParams,
)

from emulator import cards, search
from emulator.cards import TestCard
from emulator.context import Ctx
from emulator.currencies import check_charge_amount, checked_currency
from emulator.errors import DOCS, StripeError, invalid_request, not_found, state_error
from emulator.ids import new_id, secret_for
from emulator.metadata import checked, merged
from emulator.objects import blank
from emulator.resources import charges
from emulator.routing import Response, router
from emulator.store import paginate

CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
)
PAYMENT_METHOD_CONFIGURATION = {"id": "pmc_1EmulatorDefaultConfig0", "parent": None}
CARD_OPTIONS = {
    "installments": None,
    "mandate_options": None,
    "network": None,
    "request_three_d_secure": "automatic",
}
DESCRIPTOR_FORBIDDEN = "<>\\'\"*"
RETURN_URL_REQUIRED = (
    "This PaymentIntent is configured to accept payment methods enabled in your Dashboard. "
    "Because some of these payment methods might redirect your customer off of your page, you "
    "must provide a `return_url`. If you don't want to accept redirect-based payment methods, "
    "set `automatic_payment_methods[enabled]` to `true` and "
    "`automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and "
    "Payment Intents."
)
AUTHENTICATION_FAILED = (
    "The provided PaymentMethod has failed authentication. You can provide "
    "payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent again."
)
AUTHENTICATION_REQUIRED = "Your card was declined. This transaction requires authentication."


# ---------------------------------------------------------------------------------------------
# Create


def create_payment_intent(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Store a new intent from validated create params, emit `payment_intent.created`, and
    confirm it when `confirm` is true (a decline raises the 402 after the intent is stored)."""
    currency = checked_currency(params["currency"])
    amount = params["amount"]
    check_charge_amount(amount, currency)
    apm_param = params.get("automatic_payment_methods")
    # `payment_method_types` is no longer an API parameter; internal callers (checkout) may
    # still name the types that way.
    allowed = params.get("allowed_payment_method_types", params.get("payment_method_types"))
    for other in ("allowed_payment_method_types", "excluded_payment_method_types"):
        if apm_param is not None and params.get(other) is not None:
            raise invalid_request(
                f"You may only specify one of these parameters: automatic_payment_methods, "
                f"{other}.",
                param="automatic_payment_methods",
            )
    if params.get("return_url") is not None and not params.get("confirm"):
        raise invalid_request(
            "The parameter `return_url` cannot be passed when creating a PaymentIntent unless "
            "`confirm` is set to true.",
            param="return_url",
        )
    if params.get("off_session") is not None and not params.get("confirm"):
        raise invalid_request(
            "The parameter `off_session` cannot be passed when creating a PaymentIntent unless "
            "`confirm` is set to true.",
            param="off_session",
        )
    types = _payment_method_types(allowed, params.get("excluded_payment_method_types"))
    if params.get("statement_descriptor") is not None:
        _check_statement_descriptor(params["statement_descriptor"], types)
    if params.get("statement_descriptor_suffix") is not None:
        _check_suffix(params["statement_descriptor_suffix"])
    customer = params.get("customer")
    if customer is not None:
        _customer_exists(ctx, customer)
    metadata = checked(params.get("metadata"))
    apm: dict[str, Any] | None = None
    if allowed is None and (apm_param is None or apm_param.get("enabled")):
        apm = {
            "allow_redirects": (apm_param or {}).get("allow_redirects", "always"),
            "enabled": True,
        }
    pi_id = new_id("pi")
    pi = blank(
        "payment_intent",
        id=pi_id,
        allowed_payment_method_types=params.get("allowed_payment_method_types"),
        amount=amount,
        amount_capturable=0,
        amount_details={"tip": {}},
        amount_received=0,
        automatic_payment_methods=apm,
        capture_method=params.get("capture_method", "automatic_async"),
        client_secret=secret_for(pi_id),
        confirmation_method=params.get("confirmation_method", "automatic"),
        created=ctx.now(),
        currency=currency,
        customer=customer,
        description=params.get("description"),
        excluded_payment_method_types=params.get("excluded_payment_method_types"),
        managed_payments={"enabled": False},
        metadata=metadata,
        payment_method_configuration_details=dict(PAYMENT_METHOD_CONFIGURATION) if apm else None,
        payment_method_options=_payment_method_options(types),
        payment_method_types=types,
        receipt_email=params.get("receipt_email"),
        setup_future_usage=params.get("setup_future_usage"),
        shipping=_shipping(params.get("shipping")),
        statement_descriptor=params.get("statement_descriptor"),
        statement_descriptor_suffix=params.get("statement_descriptor_suffix"),
        status="requires_payment_method",
        transfer_group=params.get("transfer_group"),
    )
    if params.get("payment_method") is not None:
        pm = cards.resolve_payment_method(ctx, params["payment_method"])
        pi["payment_method"] = pm["id"]
        pi["status"] = "requires_confirmation"
    ctx.coll("payment_intent").add(pi)
    ctx.emit("payment_intent.created", pi)
    if params.get("confirm"):
        confirm_params = {k: v for k, v in params.items() if k != "payment_method"}
        return confirm_payment_intent(ctx, pi, confirm_params)
    return pi


def _payment_method_types(allowed: list[str] | None, excluded: list[str] | None) -> list[str]:
    """The types the intent can use: the allowed ones, else what dynamic payment methods give
    (the emulator's account has only cards enabled)."""
    if allowed is not None:
        return list(dict.fromkeys(allowed))
    return [t for t in ["card"] if t not in (excluded or ())] or ["card"]


def _payment_method_options(types: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {t: {} for t in types if t != "card"}
    if "card" in types:
        options["card"] = dict(CARD_OPTIONS)
    if "link" in types:
        options["link"] = {"persistent_token": None}
    return options


def _shipping(value: Any) -> dict[str, Any] | None:
    if not value:
        return None
    address = value.get("address") or {}
    return {
        "address": {
            k: address.get(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")
        },
        "carrier": value.get("carrier"),
        "name": value.get("name"),
        "phone": value.get("phone"),
        "tracking_number": value.get("tracking_number"),
    }


def _check_statement_descriptor(value: str, types: list[str]) -> None:
    if "card" in types:
        raise invalid_request(
            "The statement_descriptor parameter is not supported for the payment_method_type "
            "`card`. To continue supporting payment_method_type `card`, please pass in "
            "`statement_descriptor_suffix` or remove the `statement_descriptor` parameter "
            "altogether.",
            param="statement_descriptor",
        )
    _check_descriptor_text(value, "statement_descriptor", 22)


def _check_suffix(value: str) -> None:
    limit = 22 - len(charges.ACCOUNT_PREFIX) - 2
    if len(value) > limit:
        raise invalid_request(
            f"The statement descriptor suffix must be at most {limit} characters so that, with "
            f"your account's statement descriptor prefix ({charges.ACCOUNT_PREFIX}) and the "
            "`* ` separator, the full statement descriptor is at most 22 characters.",
            param="statement_descriptor_suffix",
        )
    _check_descriptor_text(value, "statement_descriptor_suffix", limit)


def _check_descriptor_text(value: str, param: str, limit: int) -> None:
    bad = sorted({c for c in value if c in DESCRIPTOR_FORBIDDEN})
    if bad:
        raise invalid_request(
            f"Invalid {param}: the statement descriptor cannot contain any of the following "
            f"special characters: < > \\ ' \" *. Found: {' '.join(bad)}",
            param=param,
        )
    if not any(c.isalpha() for c in value):
        raise invalid_request(
            f"Invalid {param}: the statement descriptor must contain at least one letter.",
            param=param,
        )
    if len(value) > limit:
        raise invalid_request(
            f"Invalid {param}: the statement descriptor must be at most {limit} characters.",
            param=param,
        )


def _customer_exists(ctx: Ctx, customer_id: str) -> dict[str, Any]:
    from emulator.resources.payment_methods import customer_exists

    return customer_exists(ctx, customer_id)


# ---------------------------------------------------------------------------------------------
# Confirm


def confirm_payment_intent(ctx: Ctx, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Confirm `pi` with the confirm params: charge the payment method and move the intent on.

    Success → `succeeded` (or `requires_capture` for manual capture); 3-D Secure →
    `requires_action`; the delayed-settlement card → `processing`; a decline → back to
    `requires_payment_method` with `last_payment_error`, raising the 402 card_error.
    """
    _check_confirmable(pi)
    ref = params.get("payment_method") or pi.get("payment_method")
    if not ref:
        if pi.get("customer"):
            message = (
                "You cannot confirm this PaymentIntent because it's missing a payment method. "
                f"To confirm the PaymentIntent with {pi['customer']}, specify a payment method "
                "attached to this customer along with the customer ID."
            )
        else:
            message = (
                "You cannot confirm this PaymentIntent because it's missing a payment method. "
                "You can either update the PaymentIntent with a payment method and then confirm "
                "it again, or confirm it again directly with a payment method or "
                "ConfirmationToken."
            )
        raise state_error(
            message, code="payment_intent_unexpected_state", payment_intent=_snapshot(pi)
        )
    pm = cards.resolve_payment_method(ctx, ref)
    _check_ownership(pi, pm)
    if pm.get("type") not in pi["payment_method_types"]:
        raise invalid_request(
            f"The PaymentMethod provided ({pm.get('type')}) is not allowed for this "
            "PaymentIntent. Please attach a PaymentMethod of one of the following types: "
            f"{', '.join(pi['payment_method_types'])}. Alternatively, update the allowed "
            f'payment_method_types for this PaymentIntent to include "{pm.get("type")}".',
            param="payment_method",
            payment_intent=_snapshot(pi),
        )
    for field in ("receipt_email", "setup_future_usage", "capture_method"):
        if field in params:
            pi[field] = params[field] or None
    if "shipping" in params:
        pi["shipping"] = _shipping(params["shipping"])
    if params.get("return_url"):
        ctx.store.hidden_of(pi["id"])["return_url"] = params["return_url"]
    pi["payment_method"] = pm["id"]
    pi["last_payment_error"] = None
    pi["next_action"] = None
    if pi.get("customer") and pi.get("setup_future_usage") and not pm.get("customer"):
        from emulator.resources.payment_methods import attach_payment_method

        attach_payment_method(ctx, pm, pi["customer"])
    card = cards.card_of(ctx, pm)
    if card.requires_action:
        if params.get("off_session") or params.get("error_on_requires_action"):
            _decline(
                ctx,
                pi,
                pm,
                card,
                code="authentication_required",
                decline_code="authentication_required",
                message=AUTHENTICATION_REQUIRED,
                make_charge=False,
            )
        _require_action(ctx, pi, params.get("return_url"))
        return pi
    if card.decline_code:
        _decline(
            ctx,
            pi,
            pm,
            card,
            code="card_declined",
            decline_code=card.decline_code,
            message=cards.DECLINE_MESSAGES.get(card.decline_code, "Your card was declined."),
        )
    if card.settles_later:
        _start_processing(ctx, pi, pm, card)
        return pi
    _succeed(ctx, pi, pm, card)
    return pi


def _check_confirmable(pi: dict[str, Any]) -> None:
    status = pi["status"]
    if status in CONFIRMABLE:
        return
    if status == "succeeded":
        message = (
            "You cannot confirm this PaymentIntent because it has already succeeded after being "
            "previously confirmed."
        )
    else:
        message = (
            f"This PaymentIntent could not be confirmed because it has a status of {status}. "
            "Only a PaymentIntent with one of the following statuses may be confirmed: "
            "requires_payment_method, requires_confirmation, requires_action."
        )
    raise state_error(message, code="payment_intent_unexpected_state", payment_intent=_snapshot(pi))


def _check_ownership(pi: dict[str, Any], pm: dict[str, Any]) -> None:
    owner = pm.get("customer")
    if owner is None:
        return
    if pi.get("customer") is None:
        raise invalid_request(
            f"The `payment_method` parameter supplied {pm['id']} belongs to the Customer "
            f"{owner}. Please include the Customer in the `customer` parameter on the "
            "PaymentIntent.",
            param="source",
            code="parameter_missing",
            payment_intent=_snapshot(pi),
        )
    if owner != pi["customer"]:
        raise invalid_request(
            f"The PaymentMethod {pm['id']} does not belong to the Customer you supplied "
            f"{pi['customer']}. Please use this PaymentMethod with the Customer that it belongs "
            "to instead.",
            param="payment_method",
            payment_intent=_snapshot(pi),
        )


def _snapshot(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of an object as it is now, for an error body rendered after later changes."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in obj.items()}


def _require_action(ctx: Ctx, pi: dict[str, Any], return_url: str | None) -> None:
    page = f"{ctx.emu.config.base_url}/_emulator/3ds/{pi['id']}"
    if return_url:
        pi["next_action"] = {
            "redirect_to_url": {"return_url": return_url, "url": page},
            "type": "redirect_to_url",
        }
    else:
        pi["next_action"] = {
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {
                "source": new_id("src"),
                "stripe_js": page,
                "type": "three_d_secure_redirect",
            },
        }
    pi["status"] = "requires_action"
    ctx.emit("payment_intent.requires_action", pi)


def _succeed(
    ctx: Ctx,
    pi: dict[str, Any],
    pm: dict[str, Any],
    card: TestCard,
    *,
    authenticated: bool = False,
) -> None:
    manual = pi["capture_method"] == "manual"
    charge = charges.create_charge(
        ctx, pi, pm, card, status="succeeded", captured=not manual, authenticated=authenticated
    )
    _settled(ctx, pi, charge)


def _settled(ctx: Ctx, pi: dict[str, Any], charge: dict[str, Any]) -> None:
    """The intent once its charge succeeded: captured, or authorized for a manual capture."""
    pi["latest_charge"] = charge["id"]
    pi["next_action"] = None
    pi["processing"] = None
    pi["last_payment_error"] = None
    ctx.emit("charge.succeeded", charge)
    if pi["capture_method"] == "manual":
        pi["status"] = "requires_capture"
        pi["amount_capturable"] = pi["amount"]
        ctx.emit("payment_intent.amount_capturable_updated", pi)
    else:
        pi["status"] = "succeeded"
        pi["amount_received"] = pi["amount"]
        ctx.emit("payment_intent.succeeded", pi)


def _start_processing(ctx: Ctx, pi: dict[str, Any], pm: dict[str, Any], card: TestCard) -> None:
    manual = pi["capture_method"] == "manual"
    charge = charges.create_charge(ctx, pi, pm, card, status="pending", captured=not manual)
    pi["latest_charge"] = charge["id"]
    pi["status"] = "processing"
    pi["processing"] = {"card": {"customer_notification": None}, "type": "card"}
    ctx.emit("charge.pending", charge)
    ctx.emit("payment_intent.processing", pi)


def _payment_error(
    pm: dict[str, Any],
    *,
    code: str,
    message: str,
    decline_code: str | None = None,
    charge_id: str | None = None,
    type_: str = "card_error",
) -> dict[str, Any]:
    error: dict[str, Any] = {}
    if charge_id is not None:
        error["charge"] = charge_id
    error["code"] = code
    if decline_code is not None:
        error["decline_code"] = decline_code
    error["doc_url"] = DOCS + code.replace("_", "-")
    error["message"] = message
    error["payment_method"] = _snapshot(pm)
    error["payment_method_type"] = pm.get("type")
    error["type"] = type_
    return error


def _decline(
    ctx: Ctx,
    pi: dict[str, Any],
    pm: dict[str, Any],
    card: TestCard,
    *,
    code: str,
    decline_code: str,
    message: str,
    make_charge: bool = True,
) -> None:
    """Record a failed payment attempt and raise the 402 Stripe answers with."""
    charge_id = None
    if make_charge:
        charge = charges.create_charge(
            ctx, pi, pm, card, status="failed", captured=False, failure=(code, message)
        )
        charge["outcome"] = charges.declined_outcome(decline_code)
        charge_id = charge["id"]
        pi["latest_charge"] = charge_id
    _fail(
        ctx,
        pi,
        _payment_error(
            pm, code=code, message=message, decline_code=decline_code, charge_id=charge_id
        ),
        charge_id,
    )
    raise StripeError(
        402,
        "card_error",
        message,
        code=code,
        decline_code=decline_code,
        charge=charge_id,
        payment_intent=_snapshot(pi),
        payment_method=_snapshot(pm),
    )


def _fail(ctx: Ctx, pi: dict[str, Any], error: dict[str, Any], charge_id: str | None) -> None:
    pi["status"] = "requires_payment_method"
    pi["payment_method"] = None
    pi["next_action"] = None
    pi["processing"] = None
    pi["last_payment_error"] = error
    if charge_id is not None:
        ctx.emit("charge.failed", ctx.coll("charge").get(charge_id))
    ctx.emit("payment_intent.payment_failed", pi)


def require_return_url(pi: dict[str, Any], params: dict[str, Any]) -> None:
    """Stripe's refusal to confirm server-side, without a `return_url`, an intent whose
    automatic payment methods allow redirects."""
    apm = pi.get("automatic_payment_methods") or {}
    if (
        apm.get("enabled")
        and apm.get("allow_redirects") != "never"
        and not params.get("return_url")
    ):
        raise invalid_request(RETURN_URL_REQUIRED, payment_intent=_snapshot(pi))


# ---------------------------------------------------------------------------------------------
# Routes


def _get(ctx: Ctx) -> dict[str, Any]:
    intent = ctx.path["intent"]
    if "_secret_" in intent:
        raise StripeError(
            404,
            "invalid_request_error",
            "You passed a string that looks like a client secret as the PaymentIntent ID, but "
            "you must provide a valid PaymentIntent ID. Please use the value in the `id` field "
            "of the PaymentIntent.",
            param="intent",
        )
    return ctx.coll("payment_intent").get(intent, param="intent")


@router.route("POST", "/v1/payment_intents", PaymentIntentCreateParams)
def create(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("confirm"):
        apm = params.get("automatic_payment_methods")
        uses_apm = params.get("allowed_payment_method_types") is None and (
            apm is None or apm.get("enabled")
        )
        redirects = (apm or {}).get("allow_redirects", "always") != "never"
        if uses_apm and redirects and not params.get("return_url"):
            raise invalid_request(RETURN_URL_REQUIRED)
    return create_payment_intent(ctx, params)


@router.route("GET", "/v1/payment_intents/search", PaymentIntentSearchParams)
def search_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return search.search(ctx.coll("payment_intent"), params, "/v1/payment_intents/search")


@router.route("GET", "/v1/payment_intents/{intent}", PaymentIntentRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    pi = _get(ctx)
    secret = params.get("client_secret")
    if secret is not None and secret != pi["client_secret"]:
        raise invalid_request(
            "The client_secret provided does not match the client_secret associated with the "
            "PaymentIntent.",
            param="client_secret",
        )
    return pi


AMOUNT_EDITABLE = "requires_payment_method, requires_confirmation, requires_action"


@router.route("POST", "/v1/payment_intents/{intent}", PaymentIntentUpdateParams)
def update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    pi = _get(ctx)
    editable = pi["status"] in CONFIRMABLE
    for field in ("amount", "currency", "payment_method", "capture_method"):
        if field in params and not editable:
            raise state_error(
                f"This PaymentIntent's {field} could not be updated because it has a status of "
                f"{pi['status']}. You may only update the {field} of a PaymentIntent with one of "
                f"the following statuses: {AMOUNT_EDITABLE}.",
                code="payment_intent_unexpected_state",
                param=field,
                payment_intent=_snapshot(pi),
            )
    currency = checked_currency(params["currency"]) if "currency" in params else pi["currency"]
    amount = params.get("amount", pi["amount"])
    if "amount" in params or "currency" in params:
        check_charge_amount(amount, currency)
    if params.get("statement_descriptor"):
        _check_statement_descriptor(params["statement_descriptor"], pi["payment_method_types"])
    if params.get("statement_descriptor_suffix"):
        _check_suffix(params["statement_descriptor_suffix"])
    if params.get("customer"):
        _customer_exists(ctx, params["customer"])
    pm = None
    if params.get("payment_method"):
        pm = cards.resolve_payment_method(ctx, params["payment_method"])
    metadata = pi["metadata"]
    if "metadata" in params:
        metadata = merged(pi["metadata"], params["metadata"])
    pi["amount"] = amount
    pi["currency"] = currency
    pi["metadata"] = metadata
    for field in (
        "description",
        "receipt_email",
        "customer",
        "statement_descriptor",
        "statement_descriptor_suffix",
        "setup_future_usage",
        "capture_method",
        "transfer_group",
    ):
        if field in params:
            pi[field] = params[field] or None
    if "shipping" in params:
        pi["shipping"] = _shipping(params["shipping"])
    if "payment_method" in params:
        pi["payment_method"] = pm["id"] if pm else None
        if pi["status"] in CONFIRMABLE:
            pi["status"] = "requires_confirmation" if pm else "requires_payment_method"
            pi["next_action"] = None
    return pi


@router.route("POST", "/v1/payment_intents/{intent}/confirm", PaymentIntentConfirmParams)
def confirm(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    pi = _get(ctx)
    # Stripe.js (a publishable key, `use_stripe_sdk`) handles 3-D Secure in the page itself, so
    # needs no `return_url` unless it redirects.
    handled_by_stripe_js = ctx.client and bool(params.get("use_stripe_sdk"))
    if pi["status"] in CONFIRMABLE and not handled_by_stripe_js:
        require_return_url(pi, params)
    return confirm_payment_intent(ctx, pi, params)


@router.route("POST", "/v1/payment_intents/{intent}/capture", PaymentIntentCaptureParams)
def capture(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    pi = _get(ctx)
    if pi["status"] == "succeeded" and pi["capture_method"] == "manual":
        raise state_error(
            "The remaining amount on this PaymentIntent could not be captured because the "
            "remainder of the authorized amount has been released.",
            code="payment_intent_unexpected_state",
            payment_intent=_snapshot(pi),
        )
    if pi["status"] != "requires_capture":
        raise state_error(
            f"This PaymentIntent could not be captured because it has a status of "
            f"{pi['status']}. Only a PaymentIntent with one of the following statuses may be "
            "captured: requires_capture.",
            code="payment_intent_unexpected_state",
            payment_intent=_snapshot(pi),
        )
    amount = params.get("amount_to_capture", pi["amount_capturable"])
    if amount < 1:
        raise invalid_request(
            "This value must be greater than or equal to 1.",
            param="amount_to_capture",
            code="parameter_invalid_integer",
        )
    if amount > pi["amount_capturable"]:
        raise invalid_request(
            "The payment could not be captured because the requested capture amount is greater "
            "than the amount you can capture for this charge. Contact us via "
            "https://support.stripe.com/contact/ for help.",
            code="amount_too_large",
            param="amount_to_capture",
            payment_intent=_snapshot(pi),
        )
    if params.get("statement_descriptor_suffix"):
        _check_suffix(params["statement_descriptor_suffix"])
        pi["statement_descriptor_suffix"] = params["statement_descriptor_suffix"]
    if "metadata" in params:
        pi["metadata"] = merged(pi["metadata"], params["metadata"])
    charge = ctx.coll("charge").get(pi["latest_charge"])
    charges.settle_capture(charge, amount)
    pi["status"] = "succeeded"
    pi["amount_received"] = amount
    pi["amount_capturable"] = 0
    ctx.emit("charge.captured", charge)
    ctx.emit("payment_intent.succeeded", pi)
    return pi


@router.route("POST", "/v1/payment_intents/{intent}/cancel", PaymentIntentCancelParams)
def cancel(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    pi = _get(ctx)
    if pi["status"] not in CANCELABLE:
        raise state_error(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. "
            "Only a PaymentIntent with one of the following statuses may be canceled: "
            "requires_payment_method, requires_capture, requires_reauthorization, "
            "requires_confirmation, requires_action, processing.",
            code="payment_intent_unexpected_state",
            payment_intent=_snapshot(pi),
        )
    charge = ctx.coll("charge").find(pi["latest_charge"]) if pi["latest_charge"] else None
    released = None
    abandoned = None
    if pi["status"] == "requires_capture" and charge is not None:
        released = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] = charge["amount"]
        charge["refunded"] = True
    elif pi["status"] == "processing" and charge is not None:
        charge["status"] = "failed"
        charge["paid"] = False
        charge["captured"] = False
        abandoned = charge
    pi["status"] = "canceled"
    pi["canceled_at"] = ctx.now()
    pi["cancellation_reason"] = params.get("cancellation_reason")
    pi["amount_capturable"] = 0
    pi["next_action"] = None
    pi["processing"] = None
    if released is not None and charge is not None:
        ctx.emit("charge.refunded", charge, released)
    if abandoned is not None:
        ctx.emit("charge.failed", abandoned)
    ctx.emit("payment_intent.canceled", pi)
    return pi


@router.route("GET", "/v1/payment_intents", PaymentIntentListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    customer = params.get("customer")
    if customer is None:
        return paginate(ctx.coll("payment_intent"), params, "/v1/payment_intents")
    if ctx.coll("customer").find(customer) is None:
        raise invalid_request(
            f"No such customer: '{customer}'", param="customer", code="resource_missing"
        )
    return paginate(
        ctx.coll("payment_intent"),
        params,
        "/v1/payment_intents",
        lambda pi: bool(pi["customer"] == customer),
    )


# ---------------------------------------------------------------------------------------------
# Emulator controls: finish 3-D Secure, settle a processing payment, the 3-D Secure page


def _control_intent(ctx: Ctx) -> dict[str, Any]:
    pi = ctx.coll("payment_intent").find(ctx.path["intent"])
    if pi is None:
        raise not_found("payment_intent", ctx.path["intent"], param="intent")
    return pi


def _outcome(params: dict[str, Any]) -> str:
    outcome = params.get("outcome", "succeed")
    if outcome not in ("succeed", "fail"):
        raise invalid_request('outcome must be "succeed" or "fail".', param="outcome")
    return str(outcome)


def authenticate_payment_intent(ctx: Ctx, pi: dict[str, Any], outcome: str) -> dict[str, Any]:
    """Finish the 3-D Secure challenge of an intent in `requires_action`."""
    if pi["status"] != "requires_action":
        raise state_error(
            f"This PaymentIntent has a status of {pi['status']}; only a PaymentIntent with a "
            "status of requires_action can be authenticated.",
            code="payment_intent_unexpected_state",
            payment_intent=_snapshot(pi),
        )
    pm = ctx.coll("payment_method").get(pi["payment_method"], param="payment_method")
    if outcome == "fail":
        error = _payment_error(
            pm,
            code="payment_intent_authentication_failure",
            message=AUTHENTICATION_FAILED,
            type_="invalid_request_error",
        )
        _fail(ctx, pi, error, None)
        return pi
    _succeed(ctx, pi, pm, cards.card_of(ctx, pm), authenticated=True)
    return pi


@router.route("POST", "/_emulator/payment_intents/{intent}/authenticate", body="json")
def authenticate(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Finish 3-D Secure: `{"outcome": "succeed"}` pays, `{"outcome": "fail"}` fails it."""
    return authenticate_payment_intent(ctx, _control_intent(ctx), _outcome(params))


@router.route("POST", "/_emulator/payment_intents/{intent}/settle", body="json")
def settle(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Settle a `processing` intent: `{"outcome": "succeed"}` or `{"outcome": "fail"}`."""
    pi = _control_intent(ctx)
    outcome = _outcome(params)
    if pi["status"] != "processing":
        raise state_error(
            f"This PaymentIntent has a status of {pi['status']}; only a PaymentIntent with a "
            "status of processing can be settled.",
            code="payment_intent_unexpected_state",
            payment_intent=_snapshot(pi),
        )
    charge = ctx.coll("charge").get(pi["latest_charge"])
    pm = ctx.coll("payment_method").get(charge["payment_method"], param="payment_method")
    if outcome == "fail":
        message = cards.DECLINE_MESSAGES["generic_decline"]
        charge["status"] = "failed"
        charge["captured"] = False
        charge["failure_code"] = "card_declined"
        charge["failure_message"] = message
        charge["outcome"] = charges.declined_outcome("generic_decline")
        error = _payment_error(
            pm,
            code="card_declined",
            message=message,
            decline_code="generic_decline",
            charge_id=charge["id"],
        )
        _fail(ctx, pi, error, charge["id"])
        return pi
    charge["status"] = "succeeded"
    charge["paid"] = True
    if charge["captured"]:
        charge["amount_captured"] = charge["amount"]
        charge["balance_transaction"] = new_id("txn")
    _settled(ctx, pi, charge)
    return pi


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>3D Secure test authentication</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.6rem 1.4rem;margin-right:.6rem;cursor:pointer}}</style></head>
<body><h1>3D Secure 2 test page</h1>
<p>Emulated authentication of a payment of <strong>{amount}</strong> ({intent}).</p>
{form}</body></html>
"""
_FORM = """<form method="post" action="/_emulator/3ds/{intent}{query}">
<button type="submit" name="outcome" value="succeed">Complete</button>
<button type="submit" name="outcome" value="fail">Fail</button>
</form>"""
# The answer to the page's buttons inside Stripe.js's 3-D Secure dialog (`?embedded=1`): it tells
# the page that opened the dialog, which then reads the intent.
_DONE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>3D Secure test authentication</title></head>
<body><p>Authentication {status}.</p>
<script>window.parent.postMessage({{"stripeEmulator3ds": true, "paymentIntent": "{intent}"}}, "*");
</script></body></html>
"""


def _embedded(params: dict[str, Any]) -> bool:
    return params.get("embedded") not in (None, "", "0", "false")


@router.route("GET", "/_emulator/3ds/{intent}")
def three_d_secure_page(ctx: Ctx, params: dict[str, Any]) -> Response:
    """The challenge page a 3-D Secure `next_action` points at; `?embedded=1` is its form inside
    Stripe.js's dialog, which answers the page that opened it instead of redirecting."""
    pi = ctx.coll("payment_intent").find(ctx.path["intent"])
    if pi is None:
        return Response(404, b"<!doctype html><p>No such payment_intent.</p>")
    intent = html.escape(pi["id"])
    if pi["status"] == "requires_action":
        form = _FORM.format(intent=intent, query="?embedded=1" if _embedded(params) else "")
    else:
        form = f"<p>This PaymentIntent has a status of {html.escape(pi['status'])}.</p>"
    amount = f"{pi['amount']} {html.escape(pi['currency'])}"
    return Response(200, _PAGE.format(amount=amount, intent=intent, form=form).encode())


@router.route("POST", "/_emulator/3ds/{intent}", body="form")
def three_d_secure_submit(ctx: Ctx, params: dict[str, Any]) -> Response:
    """The page's buttons: authenticate, then redirect to the `return_url` as Stripe does."""
    pi = _control_intent(ctx)
    outcome = params.get("outcome", "succeed")
    if outcome not in ("succeed", "fail"):
        outcome = "succeed"
    if pi["status"] == "requires_action":
        try:
            authenticate_payment_intent(ctx, pi, str(outcome))
        except StripeError:
            pass
    if _embedded(params):
        status = "failed" if pi["status"] == "requires_payment_method" else "complete"
        return Response(200, _DONE.format(status=status, intent=html.escape(pi["id"])).encode())
    return_url = ctx.store.hidden_of(pi["id"]).get("return_url")
    if not return_url:
        page = three_d_secure_page(ctx, {})
        assert isinstance(page, Response)
        return page
    redirect_status = {"requires_payment_method": "failed", "processing": "pending"}.get(
        pi["status"], "succeeded"
    )
    location = _with_query(
        return_url,
        {
            "payment_intent": pi["id"],
            "payment_intent_client_secret": pi["client_secret"],
            "redirect_status": redirect_status,
        },
    )
    return Response(303, b"", headers={"Location": location})


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(extra.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
