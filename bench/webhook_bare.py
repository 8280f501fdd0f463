"""The webhook anchor of bench/service.py: a bare FastAPI endpoint that only verifies
`Stripe-Signature` with the official SDK and stores nothing (`uvicorn bench.webhook_bare:app`,
with STRIPE_WEBHOOK_SECRET)."""

from __future__ import annotations

import os

import stripe
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SECRET = os.environ["STRIPE_WEBHOOK_SECRET"]
app = FastAPI()


@app.post("/webhooks/stripe")
async def receive(request: Request) -> JSONResponse:
    payload = await request.body()
    try:
        stripe.Webhook.construct_event(payload, request.headers.get("stripe-signature", ""), SECRET)
    except (ValueError, stripe.SignatureVerificationError):
        return JSONResponse({"received": False}, status_code=400)
    return JSONResponse({"received": True})
