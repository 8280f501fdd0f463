"""`/webhook-endpoints` through the whole stack: the endpoints' rows, their secrets (shown once,
rotated with a grace period), the event types they may name, their URLs (refused in live mode
when private), redelivery and the delivery log; and the signing scheme, checked against the
README's standalone snippet run verbatim."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
import typing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import DateTime, bindparam, text

from app.config import Settings
from app.events.types import EVENT_TYPES
from app.models import OrderStatus
from app.subscribers.service import listens
from app.subscribers.signing import SIGNATURE_HEADER, SignatureError, active_secrets, sign, verify
from app.subscribers.urls import refused_reason
from app.subscriptions.router import Status as SubscriptionStatus
from tests.app.test_billing_webhooks import NOW, delivered, invoice, subscription
from tests.app.test_billing_webhooks import event as billing_event
from tests.app.test_webhooks import confirm_on_stripe, create_intent
from tests.fixtures.service import Stack, extra_service
from tests.test_readme import BLOCKS

LIVE_KEY = "sk_live_51SecretLiveKeyThatMustNotBePrinted"
LIVE = {
    "stripe_secret_key": LIVE_KEY,
    "stripe_webhook_secret": "whsec_SecretWebhookValueNotToBePrinted",
    "stripe_publishable_key": "pk_live_publishable",
    "api_keys": "k_0123456789abcdef",
}
HOOK = "https://shop.example/hooks/payments"


def settings(**values: Any) -> Settings:
    """Settings from these values only (no environment, no `.env`)."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def create(stack: Stack, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"url": HOOK, "enabled_events": ["order.paid"], **params}
    response = stack.api.post("/webhook-endpoints", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value  # SQLite: JSON as text


def _time(value: Any) -> datetime | None:
    """A timestamp column as an aware datetime (SQLite hands back naive text)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pytest.fixture(scope="module", autouse=True)
def _endpoints_removed_afterwards(stack: Stack) -> Iterator[None]:
    """The endpoints these tests leave on the stack (URLs no one answers) are deleted at the end:
    the stack's relay would otherwise fan every later test's events out to them."""
    before = {row["id"] for row in stack.rows("SELECT id FROM webhook_endpoints")}
    yield
    left = {row["id"] for row in stack.rows("SELECT id FROM webhook_endpoints")} - before
    with stack.engine.begin() as connection:
        for endpoint_id in left:
            connection.execute(
                text("DELETE FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id}
            )


def endpoint_row(stack: Stack, endpoint_id: str) -> dict[str, Any] | None:
    rows = stack.rows("SELECT * FROM webhook_endpoints WHERE id = :id", id=endpoint_id)
    if not rows:
        return None
    row = rows[0]
    row["enabled_events"] = _json(row["enabled_events"])
    row["metadata"] = _json(row["metadata"])
    row["previous_secret_expires_at"] = _time(row["previous_secret_expires_at"])
    return row


def secrets_of(row: dict[str, Any], now: datetime) -> list[str]:
    """The secrets the relay signs with at `now`, from the endpoint's row."""
    return active_secrets(
        row["secret"], row["previous_secret"], row["previous_secret_expires_at"], now
    )


def count(stack: Stack, table: str) -> int:
    return int(stack.rows(f"SELECT count(*) AS n FROM {table}")[0]["n"])


def assert_error(response: httpx.Response, status: int, code: str | None, param: str | None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    assert error["type"] == "invalid_request_error"
    return str(error["message"])


def event_of_new_order(stack: Stack) -> dict[str, Any]:
    """A new order's `order.created` event."""
    intent = create_intent(stack)
    response = stack.api.get("/events", params={"order": intent["order_id"]})
    [created] = response.json()["data"]
    assert created["type"] == "order.created"
    return dict(created)


class TestCreate:
    def test_writes_the_row_and_shows_the_secret_once(self, stack: Stack) -> None:
        made = create(
            stack,
            enabled_events=["order.paid", "order.refunded", "order.paid"],
            description="Fulfilment",
            metadata={"team": "shipping"},
        )

        assert made["object"] == "webhook_endpoint"
        assert made["id"].startswith("we_")
        assert made["secret"].startswith("whsec_")
        assert len(made["secret"]) == 6 + 32
        assert (made["status"], made["previous_secret_expires_at"]) == ("enabled", None)
        assert made["enabled_events"] == ["order.paid", "order.refunded"]  # repeats dropped
        row = endpoint_row(stack, made["id"])
        assert row is not None
        assert (row["url"], row["description"], row["status"]) == (HOOK, "Fulfilment", "enabled")
        assert row["enabled_events"] == ["order.paid", "order.refunded"]
        assert row["metadata"] == {"team": "shipping"}
        assert row["secret"] == made["secret"]
        assert row["previous_secret"] is None
        # No other answer shows it.
        got = stack.api.get(f"/webhook-endpoints/{made['id']}").json()
        assert "secret" not in got
        assert got == {k: v for k, v in made.items() if k != "secret"}
        listed = stack.api.get("/webhook-endpoints", params={"limit": 100}).json()
        assert all("secret" not in e for e in listed["data"])
        assert made["secret"] not in json.dumps(listed)

    def test_every_type_alone_and_a_localhost_url_in_test_mode(self, stack: Stack) -> None:
        made = create(stack, url="http://127.0.0.1:9/hook", enabled_events=["*"])
        stack.api.delete(f"/webhook-endpoints/{made['id']}")

        assert made["enabled_events"] == ["*"]
        assert made["url"] == "http://127.0.0.1:9/hook"

    def test_idempotency_key_replays_the_same_endpoint(self, stack: Stack) -> None:
        before = count(stack, "webhook_endpoints")
        body = {"url": HOOK, "enabled_events": ["order.paid"]}
        headers = {"Idempotency-Key": f"we-{time.time_ns()}"}
        first = stack.api.post("/webhook-endpoints", json=body, headers=headers)
        again = stack.api.post("/webhook-endpoints", json=body, headers=headers)

        assert first.status_code == again.status_code == 200, again.text
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert count(stack, "webhook_endpoints") == before + 1

    @pytest.mark.parametrize(
        ("body", "code", "param", "says"),
        [
            ({"enabled_events": ["order.shipped"]}, "parameter_invalid", "enabled_events[0]",
             "not an event type"),
            ({"enabled_events": ["order.paid", "*"]}, "parameter_invalid", "enabled_events[1]",
             "must be alone"),
            ({"enabled_events": ["order.*"]}, "parameter_invalid", "enabled_events[0]",
             "not an event type"),
            ({"enabled_events": []}, "parameter_invalid", "enabled_events", "at least 1"),
            ({"enabled_events": None}, "parameter_invalid", "enabled_events", "valid list"),
            ({"url": "ftp://shop.example/hook"}, "parameter_invalid", "url", "http"),
            ({"url": "https://user:pass@shop.example/hook"}, "parameter_invalid", "url",
             "user name or password"),
            ({"url": "https:///hook"}, "parameter_invalid", "url", "no host"),
            ({"url": "https://shop.example/" + "a" * 2048}, "parameter_invalid", "url", "2048"),
            ({"url": "https://shop.example/a hook"}, "parameter_invalid", "url", "spaces"),
            ({"url": "https://shop.example:99999/"}, "parameter_invalid", "url", "port"),
            ({"secret": "whsec_mine"}, "parameter_invalid", "secret", "Extra inputs"),
        ],
        ids=[
            "unknown-type", "star-beside-others", "pattern", "empty", "null", "scheme", "userinfo",
            "no-host", "too-long", "space", "port", "own-secret",
        ],
    )  # fmt: skip
    def test_bad_input_writes_nothing(
        self, stack: Stack, body: dict[str, Any], code: str, param: str, says: str
    ) -> None:
        before = count(stack, "webhook_endpoints")

        response = stack.api.post(
            "/webhook-endpoints", json={"url": HOOK, "enabled_events": ["order.paid"], **body}
        )

        assert says in assert_error(response, 400, code, param)
        assert count(stack, "webhook_endpoints") == before

    def test_every_type_is_listed_in_the_refusal(self, stack: Stack) -> None:
        response = stack.api.post(
            "/webhook-endpoints", json={"url": HOOK, "enabled_events": ["order.shipped"]}
        )
        message = assert_error(response, 400, "parameter_invalid", "enabled_events[0]")
        assert all(name in message for name in EVENT_TYPES)


class TestReadUpdateDelete:
    def test_list_pages_newest_first(self, stack: Stack) -> None:
        made = [create(stack, description=f"page {i}")["id"] for i in range(3)]

        first = stack.api.get("/webhook-endpoints", params={"limit": 2}).json()
        second = stack.api.get(
            "/webhook-endpoints", params={"limit": 2, "starting_after": first["data"][1]["id"]}
        ).json()

        assert (first["object"], first["url"], first["has_more"]) == (
            "list",
            "/webhook-endpoints",
            True,
        )
        assert [e["id"] for e in first["data"]] == [made[2], made[1]]
        assert second["data"][0]["id"] == made[0]
        unknown = stack.api.get("/webhook-endpoints", params={"starting_after": "we_nope"})
        assert_error(unknown, 400, "resource_missing", "starting_after")

    def test_update_changes_only_what_is_sent(self, stack: Stack) -> None:
        made = create(stack, description="Fulfilment", metadata={"a": "1", "b": "2"})
        endpoint = f"/webhook-endpoints/{made['id']}"

        moved = stack.api.post(
            endpoint,
            json={
                "url": "https://shop.example/v2/hooks",
                "enabled_events": ["order.paid", "subscription.active"],
                "metadata": {"b": "", "c": "3"},
            },
        )
        assert moved.status_code == 200, moved.text
        row = endpoint_row(stack, made["id"])
        assert row is not None
        assert row["url"] == "https://shop.example/v2/hooks"
        assert row["enabled_events"] == ["order.paid", "subscription.active"]
        assert row["metadata"] == {"a": "1", "c": "3"}
        assert (row["description"], row["status"]) == ("Fulfilment", "enabled")
        assert row["secret"] == made["secret"]
        assert moved.json() == stack.api.get(endpoint).json()

        disabled = stack.api.post(endpoint, json={"disabled": True, "description": ""})
        assert disabled.json()["status"] == "disabled"
        row = endpoint_row(stack, made["id"])
        assert row is not None
        assert (row["status"], row["description"]) == ("disabled", None)
        enabled = stack.api.post(endpoint, json={"disabled": False})
        assert enabled.json()["status"] == "enabled"
        assert endpoint_row(stack, made["id"])["status"] == "enabled"  # type: ignore[index]

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"url": "https://shop.example/v3", "enabled_events": ["order.nope"]},
             "enabled_events[0]"),
            ({"url": "gopher://shop.example/", "disabled": True}, "url"),
            ({"disabled": "maybe"}, "disabled"),
            ({"status": "disabled"}, "status"),
        ],
        ids=["bad-type", "bad-url", "bad-flag", "unknown-field"],
    )  # fmt: skip
    def test_a_bad_update_changes_nothing(
        self, stack: Stack, body: dict[str, Any], param: str
    ) -> None:
        made = create(stack)
        before = endpoint_row(stack, made["id"])

        response = stack.api.post(f"/webhook-endpoints/{made['id']}", json=body)

        assert_error(response, 400, "parameter_invalid", param)
        assert endpoint_row(stack, made["id"]) == before

    def test_unknown_ids_are_404(self, stack: Stack) -> None:
        for method, path, body in (
            ("GET", "/webhook-endpoints/we_nope", None),
            ("POST", "/webhook-endpoints/we_nope", {"disabled": True}),
            ("DELETE", "/webhook-endpoints/we_nope", None),
            ("POST", "/webhook-endpoints/we_nope/rotate-secret", {}),
            ("GET", "/webhook-endpoints/we_nope/deliveries", None),
            ("GET", "/events/evt_nope/deliveries", None),
            ("POST", "/events/evt_nope/redeliver", {}),
        ):
            response = stack.api.request(method, path, json=body)
            assert_error(response, 404, "resource_missing", "id")

    def test_delete_takes_the_deliveries_and_attempts_with_it(self, stack: Stack) -> None:
        made = create(stack, enabled_events=["order.created"])
        evt = event_of_new_order(stack)
        redelivered = stack.api.post(
            f"/events/{evt['id']}/redeliver", json={"endpoint": made["id"]}
        )
        [delivery] = redelivered.json()["data"]
        with stack.engine.begin() as connection:
            connection.execute(
                ATTEMPT,
                {"delivery": delivery["id"], "at": datetime.now(UTC), "code": 500,
                 "excerpt": "oops", "error": None},
            )  # fmt: skip

        response = stack.api.delete(f"/webhook-endpoints/{made['id']}")

        assert response.status_code == 200, response.text
        assert response.json() == {"id": made["id"], "object": "webhook_endpoint", "deleted": True}
        assert endpoint_row(stack, made["id"]) is None
        assert stack.rows("SELECT id FROM event_deliveries WHERE id = :id", id=delivery["id"]) == []
        gone = stack.rows(
            "SELECT id FROM delivery_attempts WHERE delivery_id = :id", id=delivery["id"]
        )
        assert gone == []
        assert stack.rows("SELECT id FROM events WHERE id = :id", id=evt["id"])  # the event stays
        again = stack.api.delete(f"/webhook-endpoints/{made['id']}")
        assert_error(again, 404, "resource_missing", "id")


class TestRotation:
    def test_both_secrets_sign_until_the_grace_ends(self, stack: Stack) -> None:
        made = create(stack)
        started = datetime.now(UTC)

        response = stack.api.post(f"/webhook-endpoints/{made['id']}/rotate-secret")

        assert response.status_code == 200, response.text
        rotated = response.json()
        assert rotated["secret"].startswith("whsec_")
        assert rotated["secret"] != made["secret"]
        row = endpoint_row(stack, made["id"])
        assert row is not None
        assert (row["secret"], row["previous_secret"]) == (rotated["secret"], made["secret"])
        expires = row["previous_secret_expires_at"]
        assert timedelta(hours=24) <= expires - started < timedelta(hours=24, minutes=1)
        assert rotated["previous_secret_expires_at"] == int(expires.timestamp())
        shown = stack.api.get(f"/webhook-endpoints/{made['id']}").json()
        assert shown["previous_secret_expires_at"] == int(expires.timestamp())
        assert "secret" not in shown
        assert secrets_of(row, datetime.now(UTC)) == [rotated["secret"], made["secret"]]
        after = expires + timedelta(seconds=1)
        assert secrets_of(row, after) == [rotated["secret"]]

    def test_zero_ends_the_old_secret_at_once(self, stack: Stack) -> None:
        made = create(stack)
        first = stack.api.post(
            f"/webhook-endpoints/{made['id']}/rotate-secret", json={"expires_in_seconds": 600}
        ).json()

        second = stack.api.post(
            f"/webhook-endpoints/{made['id']}/rotate-secret", json={"expires_in_seconds": 0}
        ).json()

        row = endpoint_row(stack, made["id"])
        assert row is not None
        assert row["secret"] == second["secret"] not in (first["secret"], made["secret"])
        assert (row["previous_secret"], row["previous_secret_expires_at"]) == (None, None)
        assert second["previous_secret_expires_at"] is None
        assert secrets_of(row, datetime.now(UTC)) == [second["secret"]]

    @pytest.mark.parametrize("seconds", [-1, 7 * 86400 + 1, "soon"])
    def test_a_grace_outside_0_to_7_days_changes_nothing(
        self, stack: Stack, seconds: object
    ) -> None:
        made = create(stack)
        before = endpoint_row(stack, made["id"])

        response = stack.api.post(
            f"/webhook-endpoints/{made['id']}/rotate-secret", json={"expires_in_seconds": seconds}
        )

        assert_error(response, 400, "parameter_invalid", "expires_in_seconds")
        assert endpoint_row(stack, made["id"]) == before


class TestRedeliver:
    def test_to_a_named_endpoint(self, stack_without_relay: Stack) -> None:
        stack = stack_without_relay
        made = create(stack, enabled_events=["order.created", "order.paid"])
        evt = event_of_new_order(stack)

        response = stack.api.post(f"/events/{evt['id']}/redeliver", json={"endpoint": made["id"]})

        assert response.status_code == 200, response.text
        [answered] = response.json()["data"]
        assert (answered["object"], answered["event"], answered["endpoint"]) == (
            "event_delivery",
            evt["id"],
            made["id"],
        )
        assert (answered["status"], answered["attempt_count"], answered["attempts"]) == (
            "pending",
            0,
            [],
        )
        assert abs(answered["next_attempt_at"] - time.time()) < 60
        [row] = stack.rows("SELECT * FROM event_deliveries WHERE id = :id", id=answered["id"])
        assert (row["event_id"], row["endpoint_id"], row["object_id"]) == (
            evt["id"],
            made["id"],
            evt["data"]["object"]["id"],
        )
        created = _time(row["event_created"])
        assert created is not None
        assert int(created.timestamp()) == evt["created"]
        logged = stack.api.get(f"/events/{evt['id']}/deliveries").json()
        assert answered["id"] in [d["id"] for d in logged["data"]]

    def test_to_every_enabled_endpoint_that_listens(self, stack_without_relay: Stack) -> None:
        stack = stack_without_relay
        listening = create(stack, enabled_events=["order.created"])
        everything = create(stack, enabled_events=["*"])
        deaf = create(stack, enabled_events=["order.paid"])
        off = create(stack, enabled_events=["*"])
        stack.api.post(f"/webhook-endpoints/{off['id']}", json={"disabled": True})
        evt = event_of_new_order(stack)
        try:
            response = stack.api.post(f"/events/{evt['id']}/redeliver")

            assert response.status_code == 200, response.text
            targets = {d["endpoint"] for d in response.json()["data"]}
            expected = {
                row["id"]
                for row in stack.rows("SELECT * FROM webhook_endpoints WHERE status = 'enabled'")
                if listens(_json(row["enabled_events"]), "order.created")
            }
            assert targets == expected
            assert {listening["id"], everything["id"]} <= targets
            assert not {deaf["id"], off["id"]} & targets
            rows = stack.rows(
                "SELECT endpoint_id FROM event_deliveries WHERE event_id = :id", id=evt["id"]
            )
            assert {r["endpoint_id"] for r in rows} >= targets
        finally:
            for made in (everything, off):
                stack.api.delete(f"/webhook-endpoints/{made['id']}")

    def test_refusals_write_no_delivery(self, stack_without_relay: Stack) -> None:
        stack = stack_without_relay
        deaf = create(stack, enabled_events=["order.paid"])
        off = create(stack, enabled_events=["order.created"])
        stack.api.post(f"/webhook-endpoints/{off['id']}", json={"disabled": True})
        evt = event_of_new_order(stack)
        before = count(stack, "event_deliveries")
        redeliver = f"/events/{evt['id']}/redeliver"

        not_listening = stack.api.post(redeliver, json={"endpoint": deaf["id"]})
        disabled = stack.api.post(redeliver, json={"endpoint": off["id"]})
        unknown = stack.api.post(redeliver, json={"endpoint": "we_nope"})
        extra = stack.api.post(redeliver, json={"endpoint": deaf["id"], "url": HOOK})

        assert "does not listen" in assert_error(
            not_listening, 400, "endpoint_not_listening", "endpoint"
        )
        assert "disabled" in assert_error(disabled, 400, "endpoint_disabled", "endpoint")
        assert_error(unknown, 404, "resource_missing", "endpoint")
        assert_error(extra, 400, "parameter_invalid", "url")
        assert count(stack, "event_deliveries") == before

    def test_none_listening_is_a_400(self, stack_without_relay: Stack) -> None:
        stack = stack_without_relay
        evt = event_of_new_order(stack)
        # Every enabled endpoint that would take it, disabled for the test.
        taking = [
            row["id"]
            for row in stack.rows("SELECT * FROM webhook_endpoints WHERE status = 'enabled'")
            if listens(_json(row["enabled_events"]), "order.created")
        ]
        for endpoint_id in taking:
            stack.api.post(f"/webhook-endpoints/{endpoint_id}", json={"disabled": True})
        before = count(stack, "event_deliveries")
        try:
            response = stack.api.post(f"/events/{evt['id']}/redeliver", json={})
        finally:
            for endpoint_id in taking:
                stack.api.post(f"/webhook-endpoints/{endpoint_id}", json={"disabled": False})

        assert "No enabled webhook endpoint" in assert_error(
            response, 400, "endpoint_not_listening", None
        )
        assert count(stack, "event_deliveries") == before


class TestDeliveryLog:
    def test_an_events_deliveries_with_their_attempts_oldest_first(
        self, stack_without_relay: Stack
    ) -> None:
        stack = stack_without_relay
        made = create(stack, enabled_events=["order.created"])
        evt = event_of_new_order(stack)
        redeliver = f"/events/{evt['id']}/redeliver"
        first = stack.api.post(redeliver, json={"endpoint": made["id"]}).json()["data"][0]
        second = stack.api.post(redeliver, json={"endpoint": made["id"]}).json()["data"][0]
        at = datetime.now(UTC) - timedelta(minutes=5)
        with stack.engine.begin() as connection:
            for offset, code, excerpt, error in ((0, None, None, "timeout"), (1, 200, "ok", None)):
                connection.execute(
                    ATTEMPT,
                    {
                        "delivery": first["id"],
                        "at": at + timedelta(minutes=offset),
                        "code": code,
                        "excerpt": excerpt,
                        "error": error,
                    },
                )
            connection.execute(
                text(
                    "UPDATE event_deliveries SET status = 'succeeded', attempts = 2, "
                    "completed_at = :at WHERE id = :id"
                ).bindparams(bindparam("at", type_=DateTime(timezone=True))),
                {"id": first["id"], "at": datetime.now(UTC)},
            )

        logged = stack.api.get(f"/events/{evt['id']}/deliveries")

        assert logged.status_code == 200, logged.text
        body = logged.json()
        assert (body["url"], body["has_more"]) == (f"/events/{evt['id']}/deliveries", False)
        mine = [d for d in body["data"] if d["endpoint"] == made["id"]]
        assert [d["id"] for d in mine] == [first["id"], second["id"]]
        done = mine[0]
        assert (done["status"], done["attempt_count"], done["next_attempt_at"]) == (
            "succeeded",
            2,
            None,
        )
        assert done["completed_at"] is not None
        shown = [(a["status_code"], a["excerpt"], a["error"]) for a in done["attempts"]]
        assert shown == [(None, None, "timeout"), (200, "ok", None)]
        assert [a["duration_ms"] for a in done["attempts"]] == [10000, 10000]
        assert done["attempts"][0]["at"] == int(at.timestamp())
        assert (mine[1]["status"], mine[1]["attempts"]) == ("pending", [])

    def test_an_endpoints_deliveries_newest_first_by_status(
        self, stack_without_relay: Stack
    ) -> None:
        stack = stack_without_relay
        made = create(stack, enabled_events=["order.created"])
        ids = []
        for _ in range(3):
            evt = event_of_new_order(stack)
            answer = stack.api.post(f"/events/{evt['id']}/redeliver", json={"endpoint": made["id"]})
            ids.append(answer.json()["data"][0]["id"])
        with stack.engine.begin() as connection:
            connection.execute(
                text("UPDATE event_deliveries SET status = 'failed' WHERE id = :id"), {"id": ids[1]}
            )
        path = f"/webhook-endpoints/{made['id']}/deliveries"

        page = stack.api.get(path, params={"limit": 2}).json()
        rest = stack.api.get(path, params={"limit": 2, "starting_after": ids[1]}).json()
        failed = stack.api.get(path, params={"status": "failed"}).json()
        pending = stack.api.get(path, params={"status": "pending"}).json()
        bad = stack.api.get(path, params={"status": "lost"})

        assert (page["url"], page["has_more"]) == (path, True)
        assert [d["id"] for d in page["data"]] == [ids[2], ids[1]]
        assert ([d["id"] for d in rest["data"]], rest["has_more"]) == ([ids[0]], False)
        assert [d["id"] for d in failed["data"]] == [ids[1]]
        assert [d["id"] for d in pending["data"]] == [ids[2], ids[0]]
        assert_error(bad, 400, "parameter_invalid", "status")


ATTEMPT = text(
    "INSERT INTO delivery_attempts (delivery_id, at, status_code, duration_ms, excerpt, error)"
    " VALUES (:delivery, :at, :code, 10000, :excerpt, :error)"
).bindparams(bindparam("at", type_=DateTime(timezone=True)))


class TestSigning:
    BODY = b'{"id":"evt_1","type":"order.paid"}'

    def test_one_v1_per_secret_in_order(self) -> None:
        header = sign(self.BODY, ["whsec_new", "whsec_old"], 1_700_000_000)

        parts = header.split(",")
        assert parts[0] == "t=1700000000"
        assert [p[:3] for p in parts[1:]] == ["v1=", "v1="]
        assert parts[1] != parts[2]
        assert SIGNATURE_HEADER == "Payments-Signature"
        for secret in ("whsec_new", "whsec_old"):
            verify(self.BODY, header, secret, now=1_700_000_010)

    @pytest.mark.parametrize(
        ("header", "secret", "now", "why"),
        [
            (None, "whsec_new", 0, "no Payments-Signature header"),
            ("", "whsec_new", 0, "no Payments-Signature header"),
            ("garbage", "whsec_new", 0, "malformed"),
            ("v1=abc", "whsec_new", 0, "malformed"),
            ("t=soon,v1=abc", "whsec_new", 0, "malformed"),
            ("t=1700000000", "whsec_new", 0, "malformed"),
            ("t=\u00b2,v1=abc", "whsec_new", 0, "malformed"),
            ("t=1700000000,v1=\u00e9", "whsec_new", 1_700_000_000, "no v1 signature matches"),
            ("SIGNED", "whsec_new", 1_700_000_301, "too old"),
            ("SIGNED", "whsec_other", 1_700_000_010, "no v1 signature matches"),
        ],
        ids=[
            "none",
            "empty",
            "garbage",
            "no-t",
            "t-not-a-number",
            "no-v1",
            "t-superscript",
            "v1-not-ascii",
            "too-old",
            "secret",
        ],
    )
    def test_each_refusal_says_why(
        self, header: str | None, secret: str, now: int, why: str
    ) -> None:
        if header == "SIGNED":
            header = sign(self.BODY, ["whsec_new"], 1_700_000_000)
        with pytest.raises(SignatureError, match=why):
            verify(self.BODY, header, secret, now=now or 1_700_000_000)

    def test_a_changed_body_does_not_verify(self) -> None:
        header = sign(self.BODY, ["whsec_new"], 1_700_000_000)
        with pytest.raises(SignatureError, match="no v1 signature matches"):
            verify(self.BODY + b" ", header, "whsec_new", now=1_700_000_000)

    def test_the_readme_snippet_verbatim(self) -> None:
        [block] = [b for b in BLOCKS if b.language == "python" and "Payments-Signature" in b.text]
        scope: dict[str, Any] = {}
        exec(compile(block.text, "README.md", "exec"), scope)
        readme_verify = scope["verify"]
        now = int(time.time())
        rolled = sign(self.BODY, ["whsec_new", "whsec_old"], now)

        assert readme_verify(self.BODY, rolled, "whsec_new") is True
        assert readme_verify(self.BODY, rolled, "whsec_old") is True  # during a rotation
        assert readme_verify(self.BODY, rolled, "whsec_other") is False
        assert readme_verify(self.BODY + b"x", rolled, "whsec_new") is False
        old = sign(self.BODY, ["whsec_new"], now - 301)
        assert readme_verify(self.BODY, old, "whsec_new") is False
        for garbage in (
            "",
            "t=",
            "v1=abc",
            "t=x,v1=abc",
            f"t={now}",
            "t=\u00b2,v1=a",
            f"t={now},v1=\u00e9",
        ):
            assert readme_verify(self.BODY, garbage, "whsec_new") is False, garbage


def refused(url: str, **values: Any) -> str | None:
    return asyncio.run(refused_reason(url, settings(**values)))


class TestUrls:
    @pytest.fixture(autouse=True)
    def _no_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in Settings.model_fields:
            monkeypatch.delenv(name.upper(), raising=False)

    @pytest.mark.parametrize(
        ("url", "why"),
        [
            ("http://127.0.0.1:8000/hook", "loopback"),
            ("https://10.1.2.3/hook", "private"),
            ("https://192.168.0.10/hook", "private"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://[::1]/hook", "loopback"),
            ("http://[fe80::1]/hook", "link-local"),
            ("http://[::ffff:127.0.0.1]/hook", "loopback"),
            ("http://[::ffff:10.0.0.1]/hook", "private"),
            ("http://0.0.0.0/hook", "unspecified"),
            ("http://224.0.0.1/hook", "multicast"),
            ("http://240.0.0.1/hook", "reserved"),
            ("http://100.64.0.1/hook", "not a public address"),
            ("http://localhost:8000/hook", "localhost"),
            ("http://LOCALHOST./hook", "localhost"),
            ("http://shop.localhost/hook", "localhost"),
            ("http://127.1/hook", "resolves to 127.0.0.1, a loopback address"),
            ("http://2130706433/hook", "resolves to 127.0.0.1, a loopback address"),
            ("https://no-such-host.invalid/hook", "could not be resolved"),
        ],
    )
    def test_live_mode_refuses_what_is_not_public(self, url: str, why: str) -> None:
        reason = refused(url, **LIVE)
        assert reason is not None
        assert why in reason, reason
        assert refused(url, **LIVE, webhook_endpoints_allow_private=True) is None

    def test_live_mode_refuses_a_name_that_resolves_to_this_machine(self) -> None:
        host = socket.gethostname()
        try:
            addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
        except OSError:
            pytest.skip("the machine's name does not resolve")
        reason = refused(f"https://{host}/hook", **LIVE)
        publicly = all(not _private(a) for a in addresses)
        assert (reason is None) is publicly, (addresses, reason)

    def test_live_mode_takes_a_public_address(self) -> None:
        assert refused("https://93.184.215.14/hook", **LIVE) is None
        assert refused("http://[2606:4700::6810:84e5]:8443/hook", **LIVE) is None

    def test_the_setting_allows_private_addresses_in_live_mode(self) -> None:
        assert refused("http://10.0.0.5/hook", **LIVE, webhook_endpoints_allow_private=True) is None

    @pytest.mark.parametrize(
        "values",
        [{}, {"stripe_secret_key": "sk_test_x", "stripe_webhook_secret": "whsec_x"}],
        ids=["sandbox", "test-mode"],
    )
    def test_sandbox_and_test_mode_take_private_addresses(self, values: dict[str, str]) -> None:
        for url in ("http://localhost:4242/hook", "http://127.0.0.1/hook", "http://10.0.0.5/"):
            assert refused(url, **values) is None, url

    @pytest.mark.parametrize(
        "url",
        [
            "ftp://shop.example/hook",
            "javascript:alert(1)",
            "https://user@shop.example/hook",
            "https://user:pass@shop.example/hook",
            "https:///hook",
            "https://shop.example/" + "a" * 2048,
            "https://shop.example/\nhook",
            "http://[::1/hook",
            "https://shop.example:0/hook",
        ],
    )
    def test_malformed_urls_are_refused_in_every_mode(self, url: str) -> None:
        assert refused(url) is not None
        assert refused(url, **LIVE, webhook_endpoints_allow_private=True) is not None


class TestLiveService:
    def test_a_live_service_answers_400_and_writes_nothing(self, stack: Stack) -> None:
        live = {"STRIPE_SECRET_KEY": LIVE_KEY, "STRIPE_PUBLISHABLE_KEY": "pk_live_publishable"}
        before = count(stack, "webhook_endpoints")
        with extra_service(stack, **live) as api:
            private = api.post(
                "/webhook-endpoints",
                json={"url": "http://169.254.169.254/latest", "enabled_events": ["order.paid"]},
            )
            public = api.post(
                "/webhook-endpoints",
                json={"url": "https://93.184.215.14/hook", "enabled_events": ["order.paid"]},
            )
            moved = api.post(
                f"/webhook-endpoints/{public.json()['id']}", json={"url": "http://localhost/x"}
            )

        message = assert_error(private, 400, "url_refused", "url")
        assert "169.254.169.254 is a link-local address" in message
        assert "WEBHOOK_ENDPOINTS_ALLOW_PRIVATE" in message
        assert public.status_code == 200, public.text
        assert_error(moved, 400, "url_refused", "url")
        assert count(stack, "webhook_endpoints") == before + 1
        row = endpoint_row(stack, public.json()["id"])
        assert row is not None
        assert row["url"] == "https://93.184.215.14/hook"
        stack.api.delete(f"/webhook-endpoints/{public.json()['id']}")


def _private(address: str) -> bool:
    return not ipaddress.ip_address(address.partition("%")[0]).is_global


class TestEventTypes:
    def test_the_list_follows_the_statuses(self) -> None:
        made = {f"order.{s}" for s in OrderStatus if s != "pending"}
        assert made | {"order.created", "order.discarded"} == {
            t for t in EVENT_TYPES if t.startswith("order.")
        }
        assert {f"subscription.{s}" for s in typing.get_args(SubscriptionStatus)} == {
            t for t in EVENT_TYPES if t.startswith("subscription.")
        }
        assert {t for t in EVENT_TYPES if t.startswith("invoice.")} == {
            "invoice.paid",
            "invoice.payment_failed",
            "invoice.voided",
            "invoice.marked_uncollectible",
        }
        assert "*" not in EVENT_TYPES

    def test_an_endpoint_listens_to_its_types_or_to_all(self) -> None:
        assert listens(["order.paid", "order.refunded"], "order.refunded")
        assert not listens(["order.paid"], "order.refunded")
        assert listens(["*"], "invoice.voided")
        assert not listens(["order.*"], "order.paid")  # no patterns: the API refuses them

    def test_every_type_the_seed_flows_write_is_listed(self, stack: Stack) -> None:
        paid = create_intent(stack, confirm=True, payment_method="pm_card_visa")
        stack.wait_for_order(paid["order_id"], "paid")
        refund = stack.api.post("/refunds", json={"payment_intent": paid["id"], "amount": 500})
        assert refund.status_code == 200, refund.text
        failed = create_intent(stack)
        confirm_on_stripe(stack, failed["id"], "pm_card_authenticationRequired")
        stack.wait_for_order(failed["order_id"], "requires_action")
        canceled = stack.api.post(f"/payment-intents/{failed['id']}/cancel", json={})
        assert canceled.status_code == 200, canceled.text
        sub = subscription(status="trialing")
        delivered(stack, billing_event("customer.subscription.created", sub, NOW), "applied")
        inv = invoice(customer=sub["customer"], sub=sub["id"], status="paid")
        delivered(stack, billing_event("invoice.paid", inv, NOW), "applied")

        written = {r["type"] for r in stack.rows("SELECT DISTINCT type FROM events")}

        assert {
            "order.created",
            "order.paid",
            "order.partially_refunded",
            "order.requires_action",
            "order.canceled",
            "subscription.trialing",
            "invoice.paid",
        } <= written
        # Every type in the database (all the suite's flows, when it runs whole) is listed.
        assert written <= EVENT_TYPES, written - EVENT_TYPES
