"""The hosted checkout page at a session's `url`: HTML only, every value escaped.

The page lists the session's line items and total, offers Stripe's test cards (no card data is
ever typed), and posts the choice back to `/checkout/pay/{id}`; `emulator.resources.checkout`
serves it and completes the session.
"""

from __future__ import annotations

from html import escape
from typing import Any

from emulator.currencies import format_amount

# The cards the page offers: (payment method token, label).
CARD_CHOICES = (
    ("pm_card_visa", "Visa 4242 4242 4242 4242 (succeeds)"),
    ("pm_card_mastercard", "Mastercard 5555 5555 5555 4444 (succeeds)"),
    ("pm_card_chargeDeclined", "Visa 4000 0000 0000 0002 (declined)"),
    (
        "pm_card_chargeDeclinedInsufficientFunds",
        "Visa 4000 0000 0000 9995 (declined: insufficient funds)",
    ),
    ("pm_card_authenticationRequired", "Visa 4000 0027 6000 3184 (3-D Secure)"),
)

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f6f9fc;
color:#1a1f36;margin:0;padding:32px 16px}
main{max-width:480px;margin:0 auto;background:#fff;border-radius:12px;padding:28px;
box-shadow:0 4px 16px rgba(50,50,93,.12)}
h1{font-size:20px;margin:0 0 4px}.muted{color:#697386;font-size:14px}
table{width:100%;border-collapse:collapse;margin:20px 0}
td{padding:10px 0;border-bottom:1px solid #e3e8ee;vertical-align:top}
td.amount{text-align:right;white-space:nowrap}.desc{color:#697386;font-size:13px}
tr.total td{font-weight:600;border-bottom:none}
label{display:block;font-size:14px;margin:16px 0 6px}
select{width:100%;padding:10px;border:1px solid #cfd7df;border-radius:6px;font-size:15px}
button{width:100%;margin-top:20px;padding:12px;border:0;border-radius:6px;background:#635bff;
color:#fff;font-size:16px;font-weight:600;cursor:pointer}
.error{background:#fdecea;color:#a41c1c;padding:12px;border-radius:6px;margin-top:16px}
.notice{background:#eef4ff;color:#1a3d8f;padding:12px;border-radius:6px;margin-top:16px}
a.cancel{display:block;text-align:center;margin-top:16px;color:#635bff;font-size:14px}
.badge{display:inline-block;background:#ffde92;color:#5e4200;font-size:12px;border-radius:4px;
padding:2px 6px;margin-left:8px;vertical-align:middle}
"""

_TITLES = {"payment": "Pay", "subscription": "Subscribe", "setup": "Save your card"}


def _document(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    ).encode()


def _interval(price: dict[str, Any]) -> str:
    recurring = price.get("recurring")
    if not recurring:
        return ""
    count = recurring["interval_count"]
    unit = recurring["interval"]
    return f" / {unit}" if count == 1 else f" every {count} {unit}s"


def checkout_page(
    session: dict[str, Any],
    items: list[dict[str, Any]],
    product_names: dict[str, str],
    *,
    error: str | None = None,
    notice: str | None = None,
    selected: str = "pm_card_visa",
) -> bytes:
    """The payment page of an open session: its items, total, test cards, pay and cancel."""
    mode = session["mode"]
    currency = session["currency"]
    rows = []
    for item in items:
        price = item["price"]
        name = product_names.get(price["product"], item["description"] or "")
        unit = format_amount(price["unit_amount"] or 0, item["currency"])
        rows.append(
            "<tr><td>"
            f'{escape(name)}<div class="desc">Qty {item["quantity"]} × {escape(unit)}'
            f"{escape(_interval(price))}</div></td>"
            f'<td class="amount">{escape(format_amount(item["amount_total"], item["currency"]))}'
            "</td></tr>"
        )
    if session["amount_total"] is not None and currency:
        total = format_amount(session["amount_total"], currency)
        rows.append(
            '<tr class="total"><td>Total due today</td>'
            f'<td class="amount">{escape(total)}</td></tr>'
        )
    table = f"<table>{''.join(rows)}</table>" if rows else ""
    options = "".join(
        f'<option value="{escape(token)}"{" selected" if token == selected else ""}>'
        f"{escape(label)}</option>"
        for token, label in CARD_CHOICES
    )
    email = session["customer_email"] or (session["customer_details"] or {}).get("email")
    who = f'<div class="muted">{escape(email)}</div>' if email else ""
    messages = ""
    if error:
        messages += f'<div class="error" role="alert">{escape(error)}</div>'
    if notice:
        messages += f'<div class="notice">{escape(notice)}</div>'
    cancel = ""
    if session["cancel_url"]:
        cancel = f'<a class="cancel" href="{escape(session["cancel_url"])}">← Cancel and return</a>'
    title = _TITLES.get(mode, "Pay")
    body = (
        f'<h1>{escape(title)}<span class="badge">TEST MODE</span></h1>{who}{table}{messages}'
        f'<form method="post" action="/checkout/pay/{escape(session["id"])}">'
        '<label for="payment_method">Test card</label>'
        f'<select id="payment_method" name="payment_method">{options}</select>'
        f'<button type="submit">{escape(title)}</button></form>{cancel}'
    )
    return _document(title, body)


def message_page(title: str, text: str, link: tuple[str, str] | None = None) -> bytes:
    """A plain page: the session is complete, expired or unknown."""
    extra = ""
    if link is not None:
        href, label = link
        extra = f'<a class="cancel" href="{escape(href)}">{escape(label)}</a>'
    return _document(title, f'<h1>{escape(title)}</h1><p class="muted">{escape(text)}</p>{extra}')


def invoice_page(invoice: dict[str, Any], *, error: str | None = None) -> bytes:
    """An invoice's hosted page: its lines and amount due, and (while open) the test cards to
    pay it with; posts back to `/_emulator/invoices/{id}/pay`."""
    currency = invoice["currency"]
    rows = [
        f"<tr><td>{escape(line['description'] or '')}</td>"
        f'<td class="amount">{escape(format_amount(line["amount"], currency))}</td></tr>'
        for line in invoice["lines"]["data"]
    ]
    rows.append(
        '<tr class="total"><td>Amount due</td>'
        f'<td class="amount">{escape(format_amount(invoice["amount_remaining"], currency))}</td>'
        "</tr>"
    )
    number = invoice["number"] or invoice["id"]
    status = invoice["status"]
    messages = f'<div class="error" role="alert">{escape(error)}</div>' if error else ""
    if status == "open":
        options = "".join(
            f'<option value="{escape(token)}">{escape(label)}</option>'
            for token, label in CARD_CHOICES
        )
        action = (
            f'<form method="post" action="/_emulator/invoices/{escape(invoice["id"])}/pay">'
            '<label for="payment_method">Test card</label>'
            f'<select id="payment_method" name="payment_method">{options}</select>'
            '<button type="submit">Pay invoice</button></form>'
        )
    else:
        action = f'<div class="notice">This invoice is {escape(status)}.</div>'
    body = (
        f'<h1>Invoice {escape(number)}<span class="badge">TEST MODE</span></h1>'
        f'<div class="muted">{escape(invoice["customer_email"] or "")}</div>'
        f"<table>{''.join(rows)}</table>{messages}{action}"
    )
    return _document(f"Invoice {number}", body)
