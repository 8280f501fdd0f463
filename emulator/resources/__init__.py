"""One module per Stripe resource; importing them registers their routes."""

from emulator.resources import (
    charges,
    checkout,
    controls,
    customers,
    events,
    invoices,
    payment_intents,
    payment_methods,
    prices,
    products,
    refunds,
    setup_intents,
    subscriptions,
    test_clocks,
    webhook_endpoints,
)

__all__ = [
    "charges",
    "checkout",
    "controls",
    "customers",
    "events",
    "invoices",
    "payment_intents",
    "payment_methods",
    "prices",
    "products",
    "refunds",
    "setup_intents",
    "subscriptions",
    "test_clocks",
    "webhook_endpoints",
]
