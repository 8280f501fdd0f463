"""The demo shop's HTML, stylesheet and script. Every value is escaped; the pages carry no inline
script or style, so they run under the strict `CONTENT_SECURITY_POLICY` the router sends."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from app.demo.plans import Plan
from app.demo.service import MAX_QUANTITY, Item
from app.models import Order
from app.money import THREE_DECIMAL, ZERO_DECIMAL

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)

STYLESHEET = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f6f9fc;
color:#1a1f36;margin:0;padding:32px 16px}
main{max-width:560px;margin:0 auto;background:#fff;border-radius:12px;padding:28px;
box-shadow:0 4px 16px rgba(50,50,93,.12)}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.muted{color:#697386;font-size:14px}
.badge{display:inline-block;background:#ffde92;color:#5e4200;font-size:12px;border-radius:4px;
padding:2px 6px;margin-left:8px;vertical-align:middle}
table{width:100%;border-collapse:collapse;margin:16px 0}
td,th{padding:10px 4px;border-bottom:1px solid #e3e8ee;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;white-space:nowrap}
.desc{color:#697386;font-size:13px}
input[type=number]{width:64px;padding:6px;border:1px solid #cfd7df;border-radius:6px;
font-size:15px}
button,a.button{display:block;width:100%;box-sizing:border-box;margin-top:16px;padding:12px;
border:0;border-radius:6px;background:#635bff;color:#fff;font-size:16px;font-weight:600;
cursor:pointer;text-align:center;text-decoration:none}
.error{background:#fdecea;color:#a41c1c;padding:12px;border-radius:6px;margin-top:16px}
.status{display:inline-block;font-weight:600;padding:4px 10px;border-radius:999px;
background:#eef4ff;color:#1a3d8f}
.status[data-status=paid]{background:#d7f7c2;color:#05690d}
.status[data-status=payment_failed],.status[data-status=canceled],
.status[data-status=expired]{background:#fdecea;color:#a41c1c}
dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 16px;margin:16px 0}
dt{color:#697386}dd{margin:0;word-break:break-all}
code{font-size:13px}
button.secondary{background:#fff;color:#635bff;border:1px solid #635bff}
button:disabled{opacity:.6;cursor:progress}
.plan{display:flex;justify-content:space-between;align-items:center;gap:16px;
border-bottom:1px solid #e3e8ee;padding:10px 4px}
.plan form button{width:auto;margin:0;padding:8px 16px;font-size:14px}
.status[data-status=active],.status[data-status=trialing]{background:#d7f7c2;color:#05690d}
.status[data-status=past_due],.status[data-status=unpaid],.status[data-status=open]
{background:#fff4d6;color:#7a4d00}
.status[data-status=incomplete_expired],.status[data-status=uncollectible]
{background:#fdecea;color:#a41c1c}
a.button.secondary{background:#fff;color:#635bff;border:1px solid #635bff}
#payment-element{margin:8px 0}
[hidden]{display:none!important}
"""

# The success page polls the order every second until it is settled; the plan page polls its
# subscription and invoices and posts its two buttons. Both write with textContent only.
SCRIPT = """
"use strict";
(function () {
  var root = document.getElementById("order");
  if (!root) { return; }
  var settled = ["paid", "partially_refunded", "refunded", "canceled", "expired"];
  var status = document.getElementById("status");
  var history = document.getElementById("history");
  var orderId = root.getAttribute("data-order-id");
  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }
  function render(order) {
    status.textContent = order.status;
    status.setAttribute("data-status", order.status);
    root.setAttribute("data-status", order.status);
    while (history.firstChild) { history.removeChild(history.firstChild); }
    order.history.forEach(function (entry) {
      var row = document.createElement("tr");
      cell(row, new Date(entry.at).toLocaleTimeString());
      cell(row, (entry.from || "—") + " → " + entry.to);
      cell(row, entry.source);
      history.appendChild(row);
    });
  }
  function poll() {
    fetch("/demo/orders/" + encodeURIComponent(orderId), {headers: {Accept: "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (order) {
        render(order);
        if (settled.indexOf(order.status) < 0) { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 1000); });
  }
  if (settled.indexOf(root.getAttribute("data-status")) < 0) { setTimeout(poll, 1000); }
}());
(function () {
  var root = document.getElementById("plan");
  if (!root) { return; }
  var sessionId = root.getAttribute("data-session");
  var base = "/demo/plans/" + encodeURIComponent(sessionId);
  var error = document.getElementById("plan-error");
  var buttons = [document.getElementById("advance"), document.getElementById("failing-card")];
  function day(seconds) {
    return seconds ? new Date(seconds * 1000).toISOString().slice(0, 10) : "—";
  }
  function money(amount, currency) {
    var format = new Intl.NumberFormat("en-US", {style: "currency", currency: currency});
    var digits = format.resolvedOptions().maximumFractionDigits;
    return format.format(amount / Math.pow(10, digits));
  }
  function text(id, value) { document.getElementById(id).textContent = value; }
  function cell(row, value, status) {
    var td = document.createElement("td");
    if (status) {
      var badge = document.createElement("span");
      badge.className = "status";
      badge.setAttribute("data-status", value);
      badge.textContent = value;
      td.appendChild(badge);
    } else {
      td.textContent = value;
    }
    row.appendChild(td);
  }
  function render(state) {
    var sub = state.subscription;
    var status = document.getElementById("plan-status");
    status.textContent = sub ? sub.status : "waiting for Stripe";
    status.setAttribute("data-status", sub ? sub.status : "");
    root.setAttribute("data-status", sub ? sub.status : "");
    text("subscription", sub ? sub.id : "—");
    text("access", state.entitled ? "yes" : "no");
    text("clock", day(state.now));
    text("period-end", sub ? day(sub.current_period_end) : "—");
    var body = document.getElementById("invoices");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    state.invoices.forEach(function (invoice) {
      var row = document.createElement("tr");
      cell(row, day(invoice.period_start) + " → " + day(invoice.period_end));
      cell(row, invoice.billing_reason || "");
      cell(row, money(invoice.amount_due, invoice.currency));
      cell(row, invoice.status, true);
      body.appendChild(row);
    });
    var ended = sub && (sub.status === "canceled" || sub.status === "incomplete_expired");
    buttons.forEach(function (button) { button.disabled = !sub || ended; });
  }
  function poll() {
    fetch(base, {headers: {Accept: "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (state) { render(state); setTimeout(poll, 1000); })
      .catch(function () { setTimeout(poll, 1000); });
  }
  function act(path) {
    error.hidden = true;
    buttons.forEach(function (button) { button.disabled = true; });
    fetch(base + path, {method: "POST", headers: {Accept: "application/json"}})
      .then(function (response) {
        return response.json().then(function (answer) {
          if (!response.ok) {
            error.textContent = (answer.error && answer.error.message) || String(response.status);
            error.hidden = false;
          }
        });
      })
      .catch(function (failure) { error.textContent = String(failure); error.hidden = false; });
  }
  document.getElementById("advance").addEventListener("click", function () { act("/advance"); });
  document.getElementById("failing-card").addEventListener("click", function () {
    act("/failing-card");
  });
  poll();
}());
"""


def money(amount: int, currency: str) -> str:
    """`1500, "usd"` → `15.00 USD`, in the currency's own number of decimals."""
    decimals = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    value = f"{amount / 10**decimals:.{decimals}f}" if decimals else str(amount)
    return f"{value} {currency.upper()}"


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="/demo/demo.css">'
        '<script src="/demo/demo.js" defer></script></head>'
        f"<body><main>{body}</main></body></html>\n"
    )


def shop_page(items: list[Item], plans: list[Plan], *, error: str | None = None) -> str:
    rows = "".join(
        "<tr>"
        f"<td>{escape(item.name)}"
        f'<div class="desc">{escape(item.description)}</div></td>'
        f'<td class="num">{escape(money(item.unit_amount, item.currency))}</td>'
        f'<td class="num"><input type="number" name="{escape(item.price)}" '
        f'id="qty-{escape(item.price)}" aria-label="Quantity of {escape(item.name)}" '
        f'min="0" max="{MAX_QUANTITY}" value="0"></td>'
        "</tr>"
        for item in items
    )
    alert = f'<div class="error" role="alert">{escape(error)}</div>' if error else ""
    empty = "" if items else '<p class="muted">The catalogue is empty.</p>'
    body = (
        '<h1>Demo shop<span class="badge">SANDBOX</span></h1>'
        '<p class="muted">Pick items and quantities, then pay on the (emulated) Stripe checkout '
        "page with a test card.</p>"
        f"{alert}{empty}"
        '<form method="post" action="/demo/checkout">'
        '<table><thead><tr><th>Item</th><th class="num">Price</th>'
        f'<th class="num">Quantity</th></tr></thead><tbody>{rows}</tbody></table>'
        '<button type="submit" id="pay">Pay</button></form>'
        '<p class="muted">Or <a id="elements-link" href="/demo/elements">pay on this page</a> '
        "with Stripe.js and the Payment Element, as the seed's frontend does.</p>"
        f"{_plans(plans)}"
    )
    return _document("Demo shop", body)


def _plans(plans: list[Plan]) -> str:
    if not plans:
        return ""
    offers = "".join(
        '<div class="plan">'
        f"<div>{escape(plan.item.name)}"
        f'<div class="desc">{escape(money(plan.item.unit_amount, plan.item.currency))} a '
        f"{escape(plan.interval)}. {escape(plan.item.description)}</div></div>"
        '<form method="post" action="/demo/subscribe">'
        f'<input type="hidden" name="price" value="{escape(plan.item.price)}">'
        f'<button type="submit" aria-label="Subscribe to {escape(plan.item.name)}">'
        "Subscribe</button>"
        "</form></div>"
        for plan in plans
    )
    return (
        "<h2>Plans</h2>"
        '<p class="muted">Subscribe on the hosted page; the subscription runs on a test clock '
        "that the plan page moves a month at a time.</p>"
        f"{offers}"
    )


def _day(seconds: int | None) -> str:
    if not seconds:
        return "—"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d")


def plan_page(state: dict[str, Any]) -> str:
    """The subscription a plan's Checkout Session made, its invoices, and two buttons: advance
    the test clock past the next renewal, and switch to a card that declines."""
    sub = state["subscription"]
    status = sub["status"] if sub else "waiting for Stripe"
    invoices = "".join(
        "<tr>"
        f"<td>{_day(invoice['period_start'])} → {_day(invoice['period_end'])}</td>"
        f"<td>{escape(invoice['billing_reason'] or '')}</td>"
        f"<td>{escape(money(invoice['amount_due'], invoice['currency'] or 'usd'))}</td>"
        f'<td><span class="status" data-status="{escape(invoice["status"] or "")}">'
        f"{escape(invoice['status'] or '')}</span></td>"
        "</tr>"
        for invoice in state["invoices"]
    )
    body = (
        '<h1>Your plan<span class="badge">SANDBOX</span></h1>'
        '<p class="muted">Stripe bills the subscription on a test clock; this page shows the '
        "service's mirror of it, kept by Stripe's webhooks.</p>"
        f'<section id="plan" data-session="{escape(state["checkout_session"])}" '
        f'data-status="{escape(sub["status"] if sub else "")}">'
        "<dl>"
        f'<dt>Subscription</dt><dd><code id="subscription">'
        f"{escape(sub['id'] if sub else '—')}</code></dd>"
        f'<dt>Status</dt><dd><span id="plan-status" class="status" '
        f'data-status="{escape(sub["status"] if sub else "")}">{escape(status)}</span></dd>'
        f'<dt>Access</dt><dd id="access">{"yes" if state["entitled"] else "no"}</dd>'
        f'<dt>Clock</dt><dd id="clock">{_day(state["now"])}</dd>'
        f'<dt>Period ends</dt><dd id="period-end">'
        f"{_day(sub['current_period_end'] if sub else None)}</dd>"
        "</dl>"
        "<h2>Invoices</h2>"
        "<table><thead><tr><th>Period</th><th>Reason</th><th>Amount</th><th>Status</th></tr>"
        f'</thead><tbody id="invoices">{invoices}</tbody></table>'
        '<div id="plan-error" class="error" role="alert" hidden></div>'
        '<button type="button" id="advance">Advance the clock to the next renewal</button>'
        '<button type="button" id="failing-card" class="secondary">'
        "Switch to a card that declines</button>"
        "</section>"
        '<a class="button" href="/demo">Back to the shop</a>'
    )
    return _document("Your plan", body)


def success_page(order: Order) -> str:
    history = "".join(
        "<tr>"
        f"<td>{escape(entry.at.strftime('%H:%M:%S'))}</td>"
        f"<td>{escape(entry.from_status or '—')} → {escape(entry.to_status)}</td>"
        f"<td>{escape(entry.source)}</td>"
        "</tr>"
        for entry in order.history
    )
    body = (
        '<h1>Thank you<span class="badge">SANDBOX</span></h1>'
        '<p class="muted">This page follows the order as Stripe\'s webhooks move it.</p>'
        f'<section id="order" data-order-id="{escape(order.id)}" '
        f'data-status="{escape(order.status)}">'
        "<dl>"
        f"<dt>Order</dt><dd><code>{escape(order.id)}</code></dd>"
        f"<dt>Amount</dt><dd>{escape(money(order.amount, order.currency))}</dd>"
        f'<dt>Status</dt><dd><span id="status" class="status" '
        f'data-status="{escape(order.status)}">{escape(order.status)}</span></dd>'
        "</dl>"
        "<h2>History</h2>"
        "<table><thead><tr><th>Time</th><th>Change</th><th>Source</th></tr></thead>"
        f'<tbody id="history">{history}</tbody></table>'
        "</section>"
        '<a class="button" href="/demo">Back to the shop</a>'
    )
    return _document("Order status", body)
