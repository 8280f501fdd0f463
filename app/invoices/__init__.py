"""Invoices: read from the local mirror of Stripe's invoices."""
