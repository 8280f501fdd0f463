"""Stripe Billing mirrored: the ordering rule, the recording function, entitlements."""
