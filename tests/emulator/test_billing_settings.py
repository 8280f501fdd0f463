"""The emulator's failed-payment settings, each on an emulator process of its own: the retry
schedule (`--billing-retry-days`), and what becomes of the subscription and of its invoice once
every retry failed (`--billing-after-retries`, `--billing-invoice-after-retries`), as Stripe's
"Manage failed payments" settings choose (https://docs.stripe.com/billing/revenue-recovery)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import stripe

from tests.emulator.test_billing import DAY, START, advance, clocked_customer, new_clock, subscribe
from tests.fixtures.emulator import (
    EmulatorProcess,
    sdk_client,
    start_emulator,
    stop_emulator,
)


@pytest.fixture(scope="module")
def unpaid_emulator() -> Iterator[EmulatorProcess]:
    emu = start_emulator(
        "--empty",
        "--billing-retry-days",
        "1,2",
        "--billing-after-retries",
        "unpaid",
        "--billing-invoice-after-retries",
        "uncollectible",
    )
    yield emu
    stop_emulator(emu)


@pytest.fixture
def sdk(unpaid_emulator: EmulatorProcess) -> Iterator[stripe.StripeClient]:
    with sdk_client(unpaid_emulator.url) as client:
        yield client


def monthly_price(client: stripe.StripeClient) -> str:
    product = client.v1.products.create(params={"name": "Plan"})
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1500,
            "recurring": {"interval": "month"},
            "product": product.id,
        }
    )
    return price.id


class TestAfterRetries:
    def test_unpaid_and_uncollectible(self, sdk: stripe.StripeClient) -> None:
        clock = new_clock(sdk)
        customer = clocked_customer(sdk, clock.id, "pm_card_chargeCustomerFail")
        sub = subscribe(
            sdk, customer.id, items=[{"price": monthly_price(sdk)}], trial_period_days=3
        )
        failed_at = START + 3 * DAY + 3600
        advance(sdk, clock.id, failed_at)
        invoice = sdk.v1.invoices.retrieve(
            str(sdk.v1.subscriptions.retrieve(sub.id).latest_invoice)
        )
        assert invoice.next_payment_attempt == failed_at + DAY  # the first of `1,2`
        advance(sdk, clock.id, failed_at + 2 * DAY)
        sub = sdk.v1.subscriptions.retrieve(sub.id)
        assert sub.status == "unpaid"
        invoice = sdk.v1.invoices.retrieve(invoice.id)
        assert (invoice.status, invoice.attempt_count) == ("uncollectible", 3)
        # An uncollectible invoice can still be paid; the subscription is active again.
        good = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
        paid = sdk.v1.invoices.pay(invoice.id, params={"payment_method": good.id})
        assert paid.status == "paid"
        assert sdk.v1.subscriptions.retrieve(sub.id).status == "active"

    @pytest.mark.parametrize(
        "flags",
        [
            ["--billing-retry-days", "5,3"],
            ["--billing-retry-days", "x"],
            ["--billing-after-retries", "delete"],
        ],
    )
    def test_bad_settings_refused_at_start(self, flags: list[str]) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "emulator", "--port", "0", *flags],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2
        assert b"--billing" in done.stderr
