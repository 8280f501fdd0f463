"""The order state machine, exhaustively: every pair of statuses, every PaymentIntent status."""

from __future__ import annotations

import itertools

import pytest

from app.models import OrderStatus as S
from app.orders.state import (
    FINAL,
    TRANSITIONS,
    Decision,
    decide,
    status_for_payment_intent,
    status_for_refunds,
)

# The moves the issue and the design card allow, written out independently of the table.
FORWARD = {
    S.PENDING: {
        S.REQUIRES_ACTION,
        S.PROCESSING,
        S.AUTHORIZED,
        S.PAID,
        S.PAYMENT_FAILED,
        S.CANCELED,
        S.EXPIRED,
        # Only from pending: no payment intent was ever made (reconcile found none).
        S.ABANDONED,
    },
    S.REQUIRES_ACTION: {
        S.PROCESSING,
        S.AUTHORIZED,
        S.PAID,
        S.PAYMENT_FAILED,
        S.CANCELED,
        S.EXPIRED,
    },
    S.PROCESSING: {S.AUTHORIZED, S.PAID, S.PAYMENT_FAILED, S.CANCELED},
    S.AUTHORIZED: {S.PAID, S.CANCELED},
    S.PAID: {S.PARTIALLY_REFUNDED, S.REFUNDED},
    S.PARTIALLY_REFUNDED: {S.REFUNDED},
    # The customer may try again after a failure.
    S.PAYMENT_FAILED: {
        S.REQUIRES_ACTION,
        S.PROCESSING,
        S.AUTHORIZED,
        S.PAID,
        S.CANCELED,
        S.EXPIRED,
    },
    S.CANCELED: set(),
    S.EXPIRED: set(),
    S.ABANDONED: set(),
    S.REFUNDED: set(),
}
PAIRS = list(itertools.product(S, S))


class TestTable:
    def test_every_status_has_a_row(self) -> None:
        assert set(TRANSITIONS) == set(S)
        assert set(FORWARD) == set(S)

    def test_final_statuses(self) -> None:
        assert {S.CANCELED, S.EXPIRED, S.ABANDONED, S.REFUNDED} == FINAL

    def test_the_table_is_the_expected_one(self) -> None:
        assert {k: set(v) for k, v in TRANSITIONS.items()} == FORWARD

    def test_nothing_leads_back_to_pending(self) -> None:
        assert all(S.PENDING not in targets for targets in TRANSITIONS.values())

    def test_money_received_is_never_undone_by_the_payment_flow(self) -> None:
        received = {S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED}
        for current in received:
            assert TRANSITIONS[current] <= received


class TestDecide:
    @pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
    def test_every_pair(self, current: S, target: S) -> None:
        if current == target:
            expected = Decision.SAME
        elif target in FORWARD[current]:
            expected = Decision.APPLY
        else:
            expected = Decision.STALE
        assert decide(current, target) is expected

    @pytest.mark.parametrize(
        ("current", "late"),
        [
            (S.PAID, S.PROCESSING),
            (S.PAID, S.REQUIRES_ACTION),
            (S.PAID, S.AUTHORIZED),
            (S.PAID, S.PAYMENT_FAILED),
            (S.PROCESSING, S.REQUIRES_ACTION),
            (S.AUTHORIZED, S.PROCESSING),
            (S.REFUNDED, S.PARTIALLY_REFUNDED),
            (S.REFUNDED, S.PAID),
            (S.PARTIALLY_REFUNDED, S.PAID),
            (S.CANCELED, S.PAID),
            (S.EXPIRED, S.PAID),
        ],
    )
    def test_late_events_are_stale(self, current: S, late: S) -> None:
        assert decide(current, late) is Decision.STALE

    @pytest.mark.parametrize("final", sorted(FINAL))
    def test_final_statuses_never_move(self, final: S) -> None:
        assert all(decide(final, target) is not Decision.APPLY for target in S)


class TestStatusForPaymentIntent:
    @pytest.mark.parametrize(
        ("pi_status", "expected"),
        [
            ("requires_payment_method", None),
            ("requires_confirmation", None),
            ("requires_action", S.REQUIRES_ACTION),
            ("processing", S.PROCESSING),
            ("requires_capture", S.AUTHORIZED),
            ("succeeded", S.PAID),
            ("canceled", S.CANCELED),
        ],
    )
    def test_each_status(self, pi_status: str, expected: S | None) -> None:
        assert status_for_payment_intent(pi_status, failed=False) is expected

    def test_a_failed_attempt_is_payment_failed(self) -> None:
        assert status_for_payment_intent("requires_payment_method", failed=True) is S.PAYMENT_FAILED

    @pytest.mark.parametrize(
        "pi_status",
        ["requires_confirmation", "requires_action", "processing", "requires_capture", "succeeded"],
    )
    def test_failed_only_matters_for_requires_payment_method(self, pi_status: str) -> None:
        assert status_for_payment_intent(pi_status, failed=True) is status_for_payment_intent(
            pi_status, failed=False
        )

    def test_an_unknown_status_says_nothing(self) -> None:
        assert status_for_payment_intent("requires_reauthorization", failed=False) is None


class TestStatusForRefunds:
    @pytest.mark.parametrize(
        ("received", "refunded", "expected"),
        [
            (5000, 0, None),
            (5000, -1, None),
            (5000, 1, S.PARTIALLY_REFUNDED),
            (5000, 2000, S.PARTIALLY_REFUNDED),
            (5000, 4999, S.PARTIALLY_REFUNDED),
            (5000, 5000, S.REFUNDED),
            (5000, 5001, S.REFUNDED),
            (4500, 4500, S.REFUNDED),
        ],
    )
    def test_amounts(self, received: int, refunded: int, expected: S | None) -> None:
        assert status_for_refunds(received, refunded) is expected
