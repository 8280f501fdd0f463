"""An offline, stateful Stripe emulator speaking Stripe's wire protocol."""
