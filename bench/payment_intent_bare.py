"""The framework's ceiling in bench/service.py: the seed's Express endpoint written in FastAPI,
`POST /payment-intents` making the service's own Stripe call (`StripeGateway.
create_payment_intent`, the SDK on aiohttp) with `{amount, currency}` and storing nothing: no
authentication, middleware or database (`uvicorn bench.payment_intent_bare:app`, configured by
the service's settings: STRIPE_SECRET_KEY, STRIPE_API_BASE). What the service does on top of
the framework and the Stripe call is the difference between the two."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

from app.config import Settings
from app.stripe_gateway import StripeGateway


class Create(BaseModel):
    amount: int
    currency: str = "usd"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.gateway = gateway = StripeGateway(Settings())
    yield
    await gateway.close()


app = FastAPI(lifespan=lifespan)


@app.post("/payment-intents")
async def create(body: Create) -> dict[str, str | None]:
    gateway: StripeGateway = app.state.gateway
    intent = await gateway.create_payment_intent(
        {"amount": body.amount, "currency": body.currency}, idempotency_key=uuid.uuid4().hex
    )
    return {"clientSecret": intent["client_secret"]}
