"""The demo's Stripe.js checkout: the seed's frontend, as a shop would write it against Stripe.

`/demo/elements` sends the cart to `POST /api/create-payment-intent` (the server prices it), loads
Stripe.js from `GET /api/config`'s `stripeJsUrl`, mounts the Payment Element with the answered
`clientSecret` and confirms with `stripe.confirmPayment`; `/demo/elements/complete` is the
`return_url`, which follows the order until Stripe's webhook has settled it. The script uses only
Stripe.js's public API, so the same page runs against js.stripe.com; in sandbox it runs against
the emulator's copy. Card numbers go from Stripe.js's frame to Stripe, never here.
"""

from __future__ import annotations

import hmac
from html import escape
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.demo.pages import money
from app.demo.service import MAX_QUANTITY, Item
from app.errors import NotFound
from app.models import Order
from app.orders.service import find_order_for_payment_intent, with_history
from app.stripe_gateway import StripeGateway

RETURN_PATH = "/demo/elements/complete"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    """The demo's strict policy, opened to Stripe.js's origin (its script, its frames, its API
    calls) and to Stripe's API."""
    stripe_js = _origin(settings.js_url)
    api = _origin(settings.stripe_base or "https://api.stripe.com")
    connect = " ".join(dict.fromkeys(("'self'", stripe_js, api)))
    return (
        f"default-src 'none'; script-src 'self' {stripe_js}; style-src 'self'; "
        f"connect-src {connect}; frame-src {stripe_js}; img-src 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="/demo/demo.css">'
        '<script src="/demo/elements.js" defer></script></head>'
        f"<body><main>{body}</main></body></html>\n"
    )


def checkout_page(items: list[Item]) -> str:
    """The cart, then (once the server priced it) the Payment Element and a Pay button."""
    rows = "".join(
        "<tr>"
        f'<td>{escape(item.name)}<div class="desc">{escape(item.description)}</div></td>'
        f'<td class="num" data-price="{escape(item.price)}" data-unit-amount="{item.unit_amount}" '
        f'data-currency="{escape(item.currency)}">{escape(money(item.unit_amount, item.currency))}'
        "</td>"
        f'<td class="num"><input type="number" name="{escape(item.price)}" '
        f'aria-label="Quantity of {escape(item.name)}" min="0" max="{MAX_QUANTITY}" value="0">'
        "</td></tr>"
        for item in items
    )
    body = (
        '<h1>Pay on this page<span class="badge">SANDBOX</span></h1>'
        '<p class="muted">The cart goes to <code>POST /api/create-payment-intent</code>, which '
        "prices it; the card goes into Stripe.js's Payment Element and is confirmed with "
        "<code>stripe.confirmPayment</code>. The card never reaches this service.</p>"
        '<div id="error" class="error" role="alert" hidden></div>'
        '<form id="cart">'
        '<table><thead><tr><th>Item</th><th class="num">Price</th>'
        f'<th class="num">Quantity</th></tr></thead><tbody>{rows}</tbody></table>'
        '<p class="muted">Estimated total: <strong id="estimate">—</strong></p>'
        '<button type="submit" id="checkout">Continue to payment</button></form>'
        '<form id="payment-form" hidden>'
        '<dl><dt>Order</dt><dd><code id="order-id"></code></dd>'
        '<dt>Total</dt><dd id="total"></dd></dl>'
        '<div id="payment-element"></div>'
        '<div id="payment-message" class="error" role="alert" hidden></div>'
        '<button type="submit" id="submit" disabled>Pay now</button></form>'
        '<a class="button secondary" href="/demo">Back to the shop</a>'
    )
    return _document("Pay on this page", body)


def complete_page() -> str:
    """The `return_url`: Stripe's word on the payment, and the order until it is settled."""
    body = (
        '<h1>Your payment<span class="badge">SANDBOX</span></h1>'
        '<p id="stripe-message" class="muted">Checking the payment…</p>'
        '<section id="order" data-status="">'
        "<dl>"
        '<dt>Order</dt><dd><code id="order-id">—</code></dd>'
        '<dt>Amount</dt><dd id="amount">—</dd>'
        '<dt>Status</dt><dd><span id="status" class="status">waiting</span></dd>'
        "</dl>"
        "<h2>History</h2>"
        "<table><thead><tr><th>Time</th><th>Change</th><th>Source</th></tr></thead>"
        '<tbody id="history"></tbody></table>'
        "</section>"
        '<a id="retry" class="button" href="/demo/elements" hidden>Try another card</a>'
        '<a class="button secondary" href="/demo">Back to the shop</a>'
    )
    return _document("Your payment", body)


async def order_for_payment(
    session: AsyncSession, stripe: StripeGateway, intent_id: str, client_secret: str
) -> Order:
    """The order a payment intent pays, for whoever holds the intent's client secret (the
    browser that paid: Stripe puts it in the `return_url`); anyone else gets a 404."""
    missing = NotFound(f"No order for payment '{intent_id}'", param="payment_intent")
    if not intent_id.startswith("pi_") or "_secret_" in intent_id:
        raise missing
    intent = (await stripe.retrieve_payment_intent(intent_id)).to_dict()
    secret = str(intent.get("client_secret") or "")
    if not secret or not hmac.compare_digest(secret.encode(), client_secret.encode()):
        raise missing
    order = await find_order_for_payment_intent(session, intent_id, for_update=False)
    if order is None:
        raise missing
    return await with_history(session, order.id)


# The two pages' script: plain Stripe.js (`Stripe`, `elements`, `create('payment')`, `mount`,
# `confirmPayment`, `retrievePaymentIntent`), written as against js.stripe.com.
SCRIPT = """
"use strict";
(function () {
  var settled = ["paid", "partially_refunded", "refunded", "canceled"];

  function money(amount, currency) {
    var format = new Intl.NumberFormat("en-US", {style: "currency", currency: currency});
    var digits = format.resolvedOptions().maximumFractionDigits;
    return format.format(amount / Math.pow(10, digits));
  }

  function show(node, text) {
    node.textContent = text;
    node.hidden = false;
  }

  function randomKey() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // Stripe.js, from where the service says: js.stripe.com live, the emulator in sandbox.
  async function loadStripe() {
    var response = await fetch("/api/config", {headers: {Accept: "application/json"}});
    if (!response.ok) { throw new Error("GET /api/config answered " + response.status); }
    var config = await response.json();
    if (!window.Stripe) {
      await new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = config.stripeJsUrl;
        script.onload = resolve;
        script.onerror = function () { reject(new Error("Stripe.js could not be loaded")); };
        document.head.appendChild(script);
      });
    }
    return window.Stripe(config.publishableKey);
  }

  // --- /demo/elements: the cart, then the Payment Element --------------------------------
  function checkout() {
    var cart = document.getElementById("cart");
    var form = document.getElementById("payment-form");
    var error = document.getElementById("error");
    var message = document.getElementById("payment-message");
    var submit = document.getElementById("submit");
    var estimate = document.getElementById("estimate");
    // One Idempotency-Key per cart: a retry of the same cart resumes the same order.
    var attempt = randomKey();

    function items() {
      return Array.prototype.filter.call(cart.querySelectorAll("input[type=number]"),
        function (input) { return Number(input.value) > 0; }
      ).map(function (input) { return {price: input.name, quantity: Number(input.value)}; });
    }

    // What the page shows before the server prices the cart; it is never sent.
    function estimateTotal() {
      var total = 0;
      var currency = "usd";
      items().forEach(function (item) {
        var cell = cart.querySelector("[data-price='" + item.price + "']");
        total += Number(cell.getAttribute("data-unit-amount")) * item.quantity;
        currency = cell.getAttribute("data-currency");
      });
      estimate.textContent = money(total, currency);
    }

    async function pay(stripe, answer) {
      var elements = stripe.elements({
        clientSecret: answer.clientSecret,
        appearance: {theme: "stripe", variables: {colorPrimary: "#635bff"}}
      });
      var paymentElement = elements.create("payment", {layout: "tabs"});
      paymentElement.on("ready", function () { submit.disabled = false; });
      paymentElement.mount("#payment-element");
      document.getElementById("order-id").textContent = answer.orderId;
      document.getElementById("total").textContent = money(answer.amount, answer.currency);
      form.setAttribute("data-order-id", answer.orderId);
      form.setAttribute("data-payment-intent", answer.paymentIntentId);
      cart.hidden = true;
      form.hidden = false;
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        submit.disabled = true;
        message.hidden = true;
        var result = await stripe.confirmPayment({
          elements: elements,
          confirmParams: {return_url: new URL("/demo/elements/complete", location.href).href}
        });
        // Only an immediate error comes back here (a decline, a field to fix): otherwise the
        // customer is on the way to the return_url.
        var error = result.error;
        if (error.type === "card_error" || error.type === "validation_error") {
          show(message, error.message);
        } else {
          show(message, "An unexpected error occurred.");
        }
        submit.disabled = false;
      });
    }

    async function start(body) {
      error.hidden = true;
      document.getElementById("checkout").disabled = true;
      try {
        var response = await fetch("/api/create-payment-intent", {
          method: "POST",
          headers: {"Content-Type": "application/json", "Idempotency-Key": attempt},
          body: JSON.stringify(body)
        });
        var answer = await response.json();
        if (!response.ok) {
          show(error, (answer.error && answer.error.message) || String(response.status));
          return;
        }
        await pay(await loadStripe(), answer);
      } catch (failure) {
        show(error, String(failure.message || failure));
      } finally {
        document.getElementById("checkout").disabled = false;
      }
    }

    cart.addEventListener("input", function () { attempt = randomKey(); estimateTotal(); });
    cart.addEventListener("submit", function (event) {
      event.preventDefault();
      start({items: items()});
    });
    estimateTotal();
    var resume = new URLSearchParams(location.search).get("order_id");
    if (resume) { start({order_id: resume}); }
  }

  // --- /demo/elements/complete: the return_url -------------------------------------------
  function complete() {
    var query = new URLSearchParams(location.search);
    var intent = query.get("payment_intent") || "";
    var secret = query.get("payment_intent_client_secret") || "";
    // A failed attempt before this one may still show until this one's webhook arrives; only
    // a failed redirect ends on `payment_failed`.
    var final = query.get("redirect_status") === "failed"
      ? settled.concat(["payment_failed"]) : settled;
    var root = document.getElementById("order");
    var note = document.getElementById("stripe-message");
    var status = document.getElementById("status");

    function cell(row, text) {
      var td = document.createElement("td");
      td.textContent = text;
      row.appendChild(td);
    }

    function render(order) {
      document.getElementById("order-id").textContent = order.id;
      document.getElementById("amount").textContent = money(order.amount, order.currency);
      status.textContent = order.status;
      status.setAttribute("data-status", order.status);
      root.setAttribute("data-status", order.status);
      root.setAttribute("data-order-id", order.id);
      var history = document.getElementById("history");
      while (history.firstChild) { history.removeChild(history.firstChild); }
      order.history.forEach(function (entry) {
        var row = document.createElement("tr");
        cell(row, new Date(entry.at).toLocaleTimeString());
        cell(row, (entry.from || "—") + " → " + entry.to);
        cell(row, entry.source);
        history.appendChild(row);
      });
      var retry = document.getElementById("retry");
      retry.href = "/demo/elements?order_id=" + encodeURIComponent(order.id);
      retry.hidden = order.status !== "payment_failed";
    }

    // The order as the service holds it, until Stripe's webhook has settled it.
    async function poll() {
      try {
        var response = await fetch("/demo/elements/order?" + new URLSearchParams({
          payment_intent: intent, payment_intent_client_secret: secret
        }), {headers: {Accept: "application/json"}});
        if (response.ok) {
          var order = await response.json();
          render(order);
          if (final.indexOf(order.status) >= 0) { return; }
        }
      } catch (ignored) {
        // Try again below.
      }
      setTimeout(poll, 1000);
    }

    // Stripe's word on the payment, through Stripe.js.
    async function ask() {
      var stripe = await loadStripe();
      var result = await stripe.retrievePaymentIntent(secret);
      if (result.error) { note.textContent = result.error.message; return; }
      var paymentIntent = result.paymentIntent;
      var messages = {
        succeeded: "Payment succeeded!",
        processing: "Your payment is processing.",
        requires_payment_method: "Your payment was not successful, please try again."
      };
      note.textContent = messages[paymentIntent.status] || "Something went wrong.";
      if (paymentIntent.last_payment_error) {
        note.textContent += " " + paymentIntent.last_payment_error.message;
      }
    }

    ask().catch(function (failure) { note.textContent = String(failure.message || failure); });
    poll();
  }

  if (document.getElementById("cart")) { checkout(); }
  if (document.getElementById("order")) { complete(); }
}());
"""
