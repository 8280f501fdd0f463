"""Subscriptions: created and changed on Stripe, read from the local mirror."""
