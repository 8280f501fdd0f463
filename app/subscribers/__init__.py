"""The subscribers' side of events: webhook endpoints, their URLs and secrets, how deliveries are
signed, and the delivery log (`/webhook-endpoints`, `/events/{id}/redeliver`, `…/deliveries`)."""
