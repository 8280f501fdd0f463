"""`GET /orders/{id}` and `GET /orders` through the real stack: orders made by the API and
moved by the emulator's webhooks."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.service import Stack

NO_REDIRECTS = {"enabled": True, "allow_redirects": "never"}


def new_customer(stack: Stack) -> str:
    return stack.stripe.v1.customers.create(params={"email": "orders@example.com"}).id


def create_intent(stack: Stack, **params: Any) -> dict[str, Any]:
    body = {"amount": 2000, "currency": "usd", "automatic_payment_methods": NO_REDIRECTS}
    body.update(params)
    response = stack.api.post("/payment-intents", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def list_orders(stack: Stack, **params: Any) -> dict[str, Any]:
    response = stack.api.get("/orders", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_error(response: httpx.Response, status: int, code: str, param: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["param"] == param, error
    assert error["message"]


class TestRetrieve:
    def test_an_order_with_its_fields(self, stack: Stack) -> None:
        customer = new_customer(stack)
        intent = create_intent(
            stack,
            amount=4200,
            currency="eur",
            customer=customer,
            description="Two mugs",
            metadata={"order_id": "order_12345"},
        )
        response = stack.api.get(f"/orders/{intent['order_id']}")
        assert response.status_code == 200, response.text
        order = response.json()
        assert order["id"] == intent["order_id"]
        assert order["object"] == "order"
        assert order["status"] == "pending"
        assert (order["amount"], order["currency"]) == (4200, "eur")
        assert (order["amount_received"], order["amount_refunded"]) == (0, 0)
        assert order["payment_intent"] == intent["id"]
        assert order["checkout_session"] is None
        assert order["customer"] == customer
        assert order["description"] == "Two mugs"
        assert order["metadata"] == {"order_id": "order_12345"}
        assert order["created_at"] <= order["updated_at"]
        assert len(order["history"]) == 1
        assert order["history"][0]["from"] is None
        assert order["history"][0]["to"] == "pending"
        assert order["history"][0]["source"] == "api:POST /payment-intents"
        assert order["history"][0]["at"]

    def test_history_records_each_change_and_its_source(self, stack: Stack) -> None:
        intent = create_intent(stack)
        confirmed = stack.api.post(
            f"/payment-intents/{intent['id']}/confirm",
            json={"payment_method": "pm_card_delayedSettlement"},
        )
        assert confirmed.status_code == 200, confirmed.text
        assert stack.order(intent["order_id"])["status"] == "processing"
        stack.controls(f"/_emulator/payment_intents/{intent['id']}/settle", {"outcome": "succeed"})
        order = stack.wait_for_order(intent["order_id"], "paid")

        entries = [(e["from"], e["to"], e["source"]) for e in order["history"]]
        assert entries[:2] == [
            (None, "pending", "api:POST /payment-intents"),
            ("pending", "processing", f"api:POST /payment-intents/{intent['id']}/confirm"),
        ]
        assert len(entries) == 3
        assert entries[2][:2] == ("processing", "paid")
        event_id = entries[2][2]
        rows = stack.rows(
            "SELECT type, object_id, outcome FROM webhook_events WHERE stripe_event_id = :id",
            id=event_id,
        )
        assert rows == [
            {"type": "payment_intent.succeeded", "object_id": intent["id"], "outcome": "applied"}
        ]
        times = [e["at"] for e in order["history"]]
        assert times == sorted(times)

    def test_an_unknown_order_is_404(self, stack: Stack) -> None:
        response = stack.api.get("/orders/ord_does_not_exist")
        assert_error(response, 404, "resource_missing", "id")
        assert response.json()["error"]["type"] == "invalid_request_error"

    def test_an_api_key_is_required(self, stack: Stack) -> None:
        intent = create_intent(stack)
        missing = stack.public.get(f"/orders/{intent['order_id']}")
        assert_error(missing, 401, "api_key_missing", None)
        assert missing.json()["error"]["type"] == "authentication_error"
        wrong = stack.public.get(
            f"/orders/{intent['order_id']}", headers={"Authorization": "Bearer not_a_key"}
        )
        assert_error(wrong, 401, "api_key_invalid", None)
        assert_error(stack.public.get("/orders"), 401, "api_key_missing", None)


class TestList:
    def test_filters_by_customer_and_status(self, stack: Stack) -> None:
        customer = new_customer(stack)
        pending = create_intent(stack, customer=customer)
        paid = create_intent(stack, customer=customer, confirm=True, payment_method="pm_card_visa")
        canceled = create_intent(stack, customer=customer)
        response = stack.api.post(
            f"/payment-intents/{canceled['id']}/cancel",
            json={"cancellation_reason": "requested_by_customer"},
        )
        assert response.status_code == 200, response.text
        create_intent(stack, customer=new_customer(stack))  # someone else's

        everything = list_orders(stack, customer=customer)
        assert everything["object"] == "list"
        assert everything["has_more"] is False
        assert [o["id"] for o in everything["data"]] == [
            canceled["order_id"],
            paid["order_id"],
            pending["order_id"],
        ]
        assert all(o["history"] for o in everything["data"])

        for status, intent in (("pending", pending), ("paid", paid), ("canceled", canceled)):
            found = list_orders(stack, customer=customer, status=status)
            assert [o["id"] for o in found["data"]] == [intent["order_id"]], status
            assert found["data"][0]["status"] == status

        assert list_orders(stack, customer=customer, status="refunded")["data"] == []
        assert all(o["status"] == "paid" for o in list_orders(stack, status="paid")["data"])

    def test_an_unknown_status_is_400(self, stack: Stack) -> None:
        response = stack.api.get("/orders", params={"status": "shipped"})
        assert_error(response, 400, "parameter_invalid", "status")
        assert response.json()["error"]["type"] == "invalid_request_error"

    def test_pages_newest_first(self, stack: Stack) -> None:
        customer = new_customer(stack)
        made = [create_intent(stack, customer=customer)["order_id"] for _ in range(5)]
        newest_first = list(reversed(made))

        first = list_orders(stack, customer=customer, limit=2)
        assert [o["id"] for o in first["data"]] == newest_first[:2]
        assert first["has_more"] is True
        second = list_orders(stack, customer=customer, limit=2, starting_after=newest_first[1])
        assert [o["id"] for o in second["data"]] == newest_first[2:4]
        assert second["has_more"] is True
        last = list_orders(stack, customer=customer, limit=2, starting_after=newest_first[3])
        assert [o["id"] for o in last["data"]] == newest_first[4:]
        assert last["has_more"] is False
        exact = list_orders(stack, customer=customer, limit=5)
        assert [o["id"] for o in exact["data"]] == newest_first
        assert exact["has_more"] is False

    def test_the_default_page_is_ten(self, stack: Stack) -> None:
        customer = new_customer(stack)
        for _ in range(11):
            create_intent(stack, customer=customer)
        page = list_orders(stack, customer=customer)
        assert len(page["data"]) == 10
        assert page["has_more"] is True

    def test_bad_paging_parameters(self, stack: Stack) -> None:
        unknown = stack.api.get("/orders", params={"starting_after": "ord_nope"})
        assert_error(unknown, 400, "resource_missing", "starting_after")
        for limit in (0, 101, "ten"):
            response = stack.api.get("/orders", params={"limit": limit})
            assert_error(response, 400, "parameter_invalid", "limit")
