"""`/customers` through the whole stack: service, emulator, both databases."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.fixtures.service import Stack


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def create(stack: Stack, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"email": unique_email(), "name": "Jane Doe"}
    body.update(params)
    response = stack.api.post("/customers", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def local(stack: Stack, customer_id: str) -> dict[str, Any]:
    rows = stack.rows("SELECT * FROM customers WHERE stripe_id = :id", id=customer_id)
    assert len(rows) == 1, rows
    row = rows[0]
    if isinstance(row["metadata"], str):  # SQLite hands JSON back as text
        row["metadata"] = json.loads(row["metadata"])
    return row


def assert_error(response: Any, status: int, code: str | None, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = dict(response.json()["error"])
    assert error["code"] == code, error
    assert error["param"] == param, error
    return error


class TestCreate:
    def test_the_seeds_params_create_a_stripe_customer_and_a_local_row(self, stack: Stack) -> None:
        email = unique_email()
        customer = create(stack, email=email, name="Jane Doe", metadata={"user_id": "usr_123"})

        assert customer["object"] == "customer"
        assert customer["id"].startswith("cus_")
        assert customer["email"] == email
        assert customer["name"] == "Jane Doe"
        assert customer["metadata"] == {"user_id": "usr_123"}
        row = local(stack, customer["id"])
        assert row["email"] == email
        assert row["name"] == "Jane Doe"
        assert row["default_payment_method"] is None
        assert row["version"] == 0
        on_stripe = stack.stripe.v1.customers.retrieve(customer["id"])
        assert on_stripe.email == email
        assert on_stripe.metadata.to_dict() == {"user_id": "usr_123"}

    def test_phone_description_and_address_reach_stripe(self, stack: Stack) -> None:
        customer = create(
            stack,
            phone="+15555550100",
            description="VIP",
            address={"line1": "1 Main St", "city": "Springfield", "country": "US"},
        )

        on_stripe = stack.stripe.v1.customers.retrieve(customer["id"])
        assert on_stripe.phone == "+15555550100"
        assert on_stripe.description == "VIP"
        assert on_stripe.address is not None
        assert on_stripe.address.line1 == "1 Main St"
        assert customer["address"]["city"] == "Springfield"

    def test_an_invalid_email_is_refused_before_stripe(self, stack: Stack) -> None:
        response = stack.api.post("/customers", json={"email": "not-an-email", "name": "X"})

        assert_error(response, 400, "parameter_invalid", "email")
        assert stack.rows("SELECT id FROM customers WHERE email = 'not-an-email'") == []

    def test_extra_fields_are_refused(self, stack: Stack) -> None:
        email = unique_email()
        response = stack.api.post("/customers", json={"email": email, "nickname": "J"})

        assert_error(response, 400, "parameter_invalid", "nickname")
        assert stack.rows("SELECT id FROM customers WHERE email = :e", e=email) == []

    def test_bad_metadata_names_its_param(self, stack: Stack) -> None:
        response = stack.api.post("/customers", json={"metadata": {"k": "v" * 501}})

        assert_error(response, 400, "parameter_invalid", "metadata")

    def test_without_an_api_key_it_is_401(self, stack: Stack) -> None:
        email = unique_email()
        response = stack.public.post("/customers", json={"email": email})

        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert stack.rows("SELECT id FROM customers WHERE email = :e", e=email) == []


class TestPaymentMethods:
    def test_attach_then_make_it_the_default(self, stack: Stack) -> None:
        customer = create(stack)

        attached = stack.api.post(
            f"/customers/{customer['id']}/payment-methods", json={"payment_method": "pm_card_visa"}
        )
        assert attached.status_code == 200, attached.text
        method = attached.json()
        assert method["object"] == "payment_method"
        assert method["id"].startswith("pm_")
        assert method["customer"] == customer["id"]
        assert method["card"]["brand"] == "visa"

        updated = stack.api.patch(
            f"/customers/{customer['id']}",
            json={"invoice_settings": {"default_payment_method": method["id"]}},
        )
        assert updated.status_code == 200, updated.text
        assert updated.json()["invoice_settings"]["default_payment_method"] == method["id"]
        row = local(stack, customer["id"])
        assert row["default_payment_method"] == method["id"]
        assert row["version"] == 1
        on_stripe = stack.stripe.v1.customers.retrieve(customer["id"])
        assert on_stripe.invoice_settings.default_payment_method == method["id"]

        listed = stack.api.get(f"/customers/{customer['id']}/payment-methods")
        assert listed.status_code == 200, listed.text
        assert [pm["id"] for pm in listed.json()["data"]] == [method["id"]]

    def test_a_default_that_is_not_attached_is_stripes_400(self, stack: Stack) -> None:
        customer = create(stack)
        other = create(stack)
        method = stack.api.post(
            f"/customers/{other['id']}/payment-methods", json={"payment_method": "pm_card_visa"}
        ).json()

        response = stack.api.patch(
            f"/customers/{customer['id']}",
            json={"invoice_settings": {"default_payment_method": method["id"]}},
        )

        error = assert_error(
            response, 400, "resource_missing", "invoice_settings[default_payment_method]"
        )
        assert "must be attached to the customer" in error["message"]
        row = local(stack, customer["id"])
        assert row["default_payment_method"] is None
        assert row["version"] == 0

    def test_a_declined_card_cannot_be_attached(self, stack: Stack) -> None:
        customer = create(stack)

        response = stack.api.post(
            f"/customers/{customer['id']}/payment-methods",
            json={"payment_method": "pm_card_chargeDeclined"},
        )

        assert response.status_code == 402, response.text
        assert response.json()["error"]["type"] == "card_error"
        assert stack.stripe.v1.customers.payment_methods.list(customer["id"]).data == []

    def test_attach_needs_a_payment_method(self, stack: Stack) -> None:
        customer = create(stack)

        response = stack.api.post(f"/customers/{customer['id']}/payment-methods", json={})

        assert_error(response, 400, "parameter_invalid", "payment_method")


class TestUpdate:
    def test_a_change_made_again_after_another_is_applied(self, stack: Stack) -> None:
        customer = create(stack, name="A")
        path = f"/customers/{customer['id']}"

        for name in ("B", "A"):
            response = stack.api.patch(path, json={"name": name})
            assert response.status_code == 200, response.text
            assert response.json()["name"] == name

        assert stack.stripe.v1.customers.retrieve(customer["id"]).name == "A"
        row = local(stack, customer["id"])
        assert row["name"] == "A"
        assert row["version"] == 2

    def test_metadata_merges_key_by_key(self, stack: Stack) -> None:
        customer = create(stack, metadata={"user_id": "usr_123", "tier": "free"})

        response = stack.api.patch(
            f"/customers/{customer['id']}", json={"metadata": {"tier": "pro", "user_id": ""}}
        )

        assert response.status_code == 200, response.text
        assert response.json()["metadata"] == {"tier": "pro"}
        assert local(stack, customer["id"])["metadata"] == {"tier": "pro"}

    def test_an_invalid_email_is_refused_before_stripe(self, stack: Stack) -> None:
        customer = create(stack)

        response = stack.api.patch(f"/customers/{customer['id']}", json={"email": "nope"})

        assert_error(response, 400, "parameter_invalid", "email")
        assert stack.stripe.v1.customers.retrieve(customer["id"]).email == customer["email"]

    def test_an_unknown_customer_is_404(self, stack: Stack) -> None:
        response = stack.api.patch("/customers/cus_doesnotexist", json={"name": "X"})

        assert_error(response, 404, "resource_missing", "id")


class TestRead:
    def test_retrieve_is_fresh_from_stripe_and_refreshes_the_row(self, stack: Stack) -> None:
        customer = create(stack, name="Before")
        stack.stripe.v1.customers.update(customer["id"], params={"name": "After"})

        response = stack.api.get(f"/customers/{customer['id']}")

        assert response.status_code == 200, response.text
        assert response.json()["name"] == "After"
        assert local(stack, customer["id"])["name"] == "After"

    def test_customers_not_created_here_are_404(self, stack: Stack) -> None:
        for customer_id in ("cus_doesnotexist", "cus_123"):
            response = stack.api.get(f"/customers/{customer_id}")
            error = assert_error(response, 404, "resource_missing", "id")
            assert error["type"] == "invalid_request_error"
        response = stack.api.get("/customers/cus_123/payment-methods")
        assert_error(response, 404, "resource_missing", "id")

    def test_list_filters_by_email_and_pages(self, stack: Stack) -> None:
        email = unique_email()
        made = [create(stack, email=email, name=f"n{i}")["id"] for i in range(3)]
        create(stack)

        first = stack.api.get("/customers", params={"email": email, "limit": 2})
        assert first.status_code == 200, first.text
        page = first.json()
        assert page["object"] == "list"
        assert [c["id"] for c in page["data"]] == [made[2], made[1]]
        assert page["has_more"] is True
        assert page["data"][0]["email"] == email

        second = stack.api.get(
            "/customers", params={"email": email, "limit": 2, "starting_after": made[1]}
        ).json()
        assert [c["id"] for c in second["data"]] == [made[0]]
        assert second["has_more"] is False

    def test_list_refuses_a_bad_limit_and_an_unknown_cursor(self, stack: Stack) -> None:
        assert_error(
            stack.api.get("/customers", params={"limit": 0}), 400, "parameter_invalid", "limit"
        )
        assert_error(
            stack.api.get("/customers", params={"starting_after": "cus_nope"}),
            400,
            "resource_missing",
            "starting_after",
        )

    def test_reads_need_an_api_key(self, stack: Stack) -> None:
        assert stack.public.get("/customers").status_code == 401
        assert stack.public.get("/customers/cus_123").status_code == 401
