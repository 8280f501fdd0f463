"""The service's own events (the outbox): every order transition, subscription status change
and invoice outcome, listed and retrieved."""
