"""Bad input never crashes the emulator: every /v1 route, fed odd parameters, answers a Stripe
envelope with a 2xx or 4xx, never a 500 or a traceback."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.fixtures.emulator import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
ODD_PARAMS: list[dict[str, str]] = [
    {},
    {"expand[]": "nothing_here"},
    {"expand[]": "data.customer.nothing.deeper.still"},
    {"metadata[x]": "y" * 600},
    {"amount": "99999999999999999999"},
    {"amount": "-5", "currency": "xyz"},
    {"limit": "0"},
    {"customer": "cus_missing"},
    {"payment_method": "pm_missing"},
    {"line_items[0][price]": "price_missing", "line_items[0][quantity]": "1"},
    {"query": "status:'"},
]


def real_ids(controls: httpx.Client) -> dict[str, str]:
    """One object of each kind to put into path parameters, made over the API."""

    def post(path: str, data: dict[str, str]) -> dict[str, str]:
        return dict(controls.post(path, data=data, headers=AUTH).json())

    customer = post("/v1/customers", {"email": "a@example.com"})
    intent = post(
        "/v1/payment_intents",
        {
            "amount": "2000",
            "currency": "usd",
            "confirm": "true",
            "payment_method": "pm_card_visa",
            "return_url": "https://e.com/back",
        },
    )
    refund = post("/v1/refunds", {"payment_intent": intent["id"], "amount": "100"})
    session = post(
        "/v1/checkout/sessions",
        {
            "mode": "payment",
            "success_url": "https://e.com/s",
            "line_items[0][price]": "price_123",
            "line_items[0][quantity]": "1",
        },
    )
    pm = post("/v1/payment_methods/pm_card_visa/attach", {"customer": customer["id"]})
    endpoint = post("/v1/webhook_endpoints", {"url": "https://e.com/h", "enabled_events[]": "*"})
    return {
        "customer": customer["id"],
        "intent": intent["id"],
        "payment_intent": intent["id"],
        "charge": intent["latest_charge"],
        "refund": refund["id"],
        "session": session["id"],
        "payment_method": pm["id"],
        "price": "price_123",
        "product": controls.get("/v1/prices/price_123", headers=AUTH).json()["product"],
        "webhook_endpoint": endpoint["id"],
    }


def test_every_route_survives_odd_input(controls: httpx.Client) -> None:
    ids = real_ids(controls)
    routes = [r for r in controls.get("/_emulator/routes").json()["data"] if " /v1/" in r]
    assert len(routes) > 40
    failures: list[str] = []
    for route in routes:
        method, template = route.split(" ", 1)
        for use_real in (True, False):
            path = re.sub(
                r"\{(\w+)\}",
                lambda m: ids.get(m.group(1), "zz_unknown") if use_real else "zz_unknown",  # noqa: B023
                template,
            )
            for params in ODD_PARAMS:
                if method == "GET" or method == "DELETE":
                    response = controls.request(method, path, params=params, headers=AUTH)
                else:
                    response = controls.request(method, path, data=params, headers=AUTH)
                body = response.json()
                ok = 200 <= response.status_code < 500 and (
                    response.status_code < 400 or "type" in body.get("error", {})
                )
                if not ok:
                    failures.append(f"{method} {path} {params} -> {response.status_code}")
    assert failures == []


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "PUT", "PATCH"])
def test_unknown_paths_are_404_envelopes(controls: httpx.Client, method: str) -> None:
    response = controls.request(method, "/v1/nope/nope/nope", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
