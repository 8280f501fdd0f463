"""The sandbox demo checkout page."""
