"""The payments service: a FastAPI app in front of Stripe (or the offline emulator)."""
