"""The only code that imports `stripe`: one thin async method per Stripe operation.

Every Stripe outcome is one of three, and becomes the service's own error (`app.errors`):
- done: Stripe answered 2xx;
- refused: Stripe answered and did nothing: a card error (402 with Stripe's code), an invalid
  request (400/404 with Stripe's message), an idempotency error, authentication or permission
  (502: the service is misconfigured), rate limiting (503 with Retry-After);
- unknown: anything else on a write (a timeout, a dropped connection, a 5xx, a 409
  `idempotency_key_in_use` because the first request with the key is still running, any error
  we do not recognise): `OutcomeUnknown`, 503 with Retry-After. The write may have taken effect;
  only the same idempotency key may try it again. On a read, the same answers are
  `StripeUnavailable`.

Retries: the SDK retries 5xx, 409 and network errors itself (`max_network_retries`, same
idempotency key). It does not retry 429, so `_call` does: at most `stripe_rate_limit_retries`
more attempts, each after Stripe's `Retry-After` capped at `stripe_rate_limit_max_wait_seconds`;
then 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

import aiohttp
import httpx
import orjson
import stripe
import stripe._api_requestor as stripe_api_requestor
import stripe._util as stripe_util
from fastapi import Depends, Request
from stripe.params import (
    CustomerCreateParams,
    CustomerListParams,
    CustomerUpdateParams,
    EventListParams,
    InvoiceListParams,
    PaymentIntentCancelParams,
    PaymentIntentCaptureParams,
    PaymentIntentConfirmParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentIntentSearchParams,
    PaymentMethodAttachParams,
    PriceListParams,
    RefundCreateParams,
    SubscriptionCancelParams,
    SubscriptionCreateParams,
    SubscriptionListParams,
    SubscriptionUpdateParams,
    WebhookEndpointCreateParams,
    WebhookEndpointListParams,
)
from stripe.params.checkout import SessionCreateParams
from stripe.params.test_helpers import TestClockAdvanceParams, TestClockCreateParams

from app.config import Settings
from app.errors import (
    AppError,
    CardDeclined,
    Conflict,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    StripeFailure,
    StripeUnavailable,
)
from app.idempotency import started_executing
from app.observability import Metrics

log = logging.getLogger("app.stripe")
T = TypeVar("T")
Listed = TypeVar("Listed", bound=stripe.StripeObject)
API_VERSION: str = stripe.api_version  # the version the SDK is pinned to; every call uses it
StripeObject = stripe.StripeObject
SignatureError = stripe.SignatureVerificationError


DEFAULT_API_BASE = "https://api.stripe.com"


def _sdk_logs_formatted_only_when_written() -> None:
    """The SDK formats its log lines for every request (each response body as a quoted string
    among them) before `logging` drops them: the `stripe` logger writes nothing below WARNING
    unless configured to, or unless `STRIPE_LOG` asks for them on stderr. Its two log functions
    are wrapped to do that work only then (about 3% of the CPU per create, bench/README.md)."""
    sdk_logger = logging.getLogger("stripe")

    def when_written(level: int, write: Callable[..., None]) -> Callable[..., None]:
        def log(message: str, **params: Any) -> None:
            console = stripe_util._console_log_level()  # type: ignore[no-untyped-call]
            if console is not None or sdk_logger.isEnabledFor(level):
                write(message, **params)

        return log

    log_debug = when_written(logging.DEBUG, stripe_util.log_debug)
    log_info = when_written(logging.INFO, stripe_util.log_info)
    for module in (stripe_util, stripe_api_requestor):
        module.log_debug = log_debug  # type: ignore[attr-defined]
        module.log_info = log_info  # type: ignore[attr-defined]


_sdk_logs_formatted_only_when_written()


class _AIOHTTPClient(stripe.AIOHTTPClient):
    """The SDK's aiohttp client, with a connection cut while the body is read reported as the
    network error it is (`APIConnectionError`, retried), as the httpx client does; the SDK
    reads the body outside its error handling and lets aiohttp's exception through."""

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        content, status, response_headers = await self.request_stream_async(
            method, url, headers, post_data=post_data
        )
        try:
            body = await content.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._handle_request_error(exc)
        return body, status, response_headers


class StripeGateway:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        base = {"api": settings.stripe_base} if settings.stripe_base else None
        self.api_base = settings.stripe_base or DEFAULT_API_BASE
        self.metrics = metrics
        # aiohttp rather than httpx: a third of the CPU per call. No cap on open connections
        # (aiohttp's default is 100), so every request waiting on a slow Stripe has its own.
        self._http = _AIOHTTPClient(
            timeout=aiohttp.ClientTimeout(total=settings.stripe_timeout_seconds),
            connector=aiohttp.TCPConnector(
                limit=0, ssl=ssl.create_default_context(cafile=stripe.ca_bundle_path)
            ),
        )
        self.client = stripe.StripeClient(
            settings.stripe_key,
            http_client=self._http,
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=settings.stripe_max_network_retries,
        )
        self.rate_limit_retries = settings.stripe_rate_limit_retries
        self.rate_limit_max_wait = settings.stripe_rate_limit_max_wait_seconds
        self.webhook_secret = settings.webhook_secret
        self.webhook_tolerance = settings.webhook_tolerance_seconds
        self.webhook_unmatched_after = settings.webhook_unmatched_after_seconds

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def reachable(self, timeout: float) -> str | None:
        """None when Stripe's API answers any HTTP response within `timeout` seconds, else why
        not. An unauthenticated `GET /v1/balance`: no key is sent, a 401 counts as an answer."""
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                await client.get(f"{self.api_base.rstrip('/')}/v1/balance")
        except httpx.TimeoutException:
            return f"no answer within {timeout:g} s"
        except httpx.HTTPError as exc:
            return f"unreachable: {type(exc).__name__}"
        return None

    # Webhooks ------------------------------------------------------------------------------

    def verify_event(self, payload: bytes, signature: str) -> dict[str, Any]:
        """The event, if `Stripe-Signature` is valid for the raw body; raises SignatureError, or
        ValueError when the signed body is not a JSON object (or is a v2 thin event). The SDK
        checks the signature only: its `construct_event` would build a StripeObject tree that
        the caller would turn straight back into dicts."""
        stripe.WebhookSignature.verify_header(
            payload, signature, self.webhook_secret, self.webhook_tolerance
        )
        event = orjson.loads(payload)
        if not isinstance(event, dict) or event.get("object") == "v2.core.event":
            raise ValueError("The signed body is not a snapshot event.")
        return event

    # Payment intents -----------------------------------------------------------------------

    async def create_payment_intent(
        self, params: PaymentIntentCreateParams, idempotency_key: str
    ) -> dict[str, Any]:
        """The created intent as Stripe's JSON: the hot path skips building a StripeObject (most
        of the SDK's CPU per call) only to turn it back into a dict."""
        response = await self._write(
            "payment_intent.create",
            lambda: self.client.raw_request_async(
                "post", "/v1/payment_intents", idempotency_key=idempotency_key, **params
            ),
        )
        intent: dict[str, Any] = response.data
        return intent

    async def retrieve_payment_intent(self, intent_id: str) -> stripe.PaymentIntent:
        return await self._read(
            "payment_intent.retrieve",
            lambda: self.client.v1.payment_intents.retrieve_async(intent_id),
        )

    async def search_payment_intents(
        self, params: PaymentIntentSearchParams
    ) -> stripe.SearchResultObject[stripe.PaymentIntent]:
        return await self._read(
            "payment_intent.search",
            lambda: self.client.v1.payment_intents.search_async(params),
        )

    async def list_payment_intents(
        self, params: PaymentIntentListParams
    ) -> AsyncIterator[stripe.PaymentIntent]:
        """Every payment intent matching `params`, newest first, one page request at a time."""
        pages = self.client.v1.payment_intents.list_async
        async for intent in self._every("payment_intent.list", pages, params):
            yield intent

    async def confirm_payment_intent(
        self, intent_id: str, params: PaymentIntentConfirmParams, idempotency_key: str
    ) -> stripe.PaymentIntent:
        return await self._write(
            "payment_intent.confirm",
            lambda: self.client.v1.payment_intents.confirm_async(
                intent_id, params, {"idempotency_key": idempotency_key}
            ),
        )

    async def capture_payment_intent(
        self, intent_id: str, params: PaymentIntentCaptureParams, idempotency_key: str
    ) -> stripe.PaymentIntent:
        return await self._write(
            "payment_intent.capture",
            lambda: self.client.v1.payment_intents.capture_async(
                intent_id, params, {"idempotency_key": idempotency_key}
            ),
        )

    async def cancel_payment_intent(
        self, intent_id: str, params: PaymentIntentCancelParams, idempotency_key: str
    ) -> stripe.PaymentIntent:
        return await self._write(
            "payment_intent.cancel",
            lambda: self.client.v1.payment_intents.cancel_async(
                intent_id, params, {"idempotency_key": idempotency_key}
            ),
        )

    # Customers and payment methods ---------------------------------------------------------

    async def create_customer(
        self, params: CustomerCreateParams, idempotency_key: str
    ) -> stripe.Customer:
        return await self._write(
            "customer.create",
            lambda: self.client.v1.customers.create_async(
                params, {"idempotency_key": idempotency_key}
            ),
        )

    async def retrieve_customer(self, customer_id: str) -> stripe.Customer:
        return await self._read(
            "customer.retrieve", lambda: self.client.v1.customers.retrieve_async(customer_id)
        )

    async def update_customer(
        self, customer_id: str, params: CustomerUpdateParams, idempotency_key: str
    ) -> stripe.Customer:
        return await self._write(
            "customer.update",
            lambda: self.client.v1.customers.update_async(
                customer_id, params, {"idempotency_key": idempotency_key}
            ),
        )

    async def list_customers(
        self, params: CustomerListParams
    ) -> stripe.ListObject[stripe.Customer]:
        return await self._read(
            "customer.list", lambda: self.client.v1.customers.list_async(params)
        )

    async def attach_payment_method(
        self, payment_method: str, params: PaymentMethodAttachParams, idempotency_key: str
    ) -> stripe.PaymentMethod:
        return await self._write(
            "payment_method.attach",
            lambda: self.client.v1.payment_methods.attach_async(
                payment_method, params, {"idempotency_key": idempotency_key}
            ),
        )

    async def list_customer_payment_methods(
        self, customer_id: str
    ) -> stripe.ListObject[stripe.PaymentMethod]:
        return await self._read(
            "customer.payment_methods.list",
            lambda: self.client.v1.customers.payment_methods.list_async(customer_id),
        )

    # Checkout sessions ---------------------------------------------------------------------

    async def create_checkout_session(
        self, params: SessionCreateParams, idempotency_key: str
    ) -> stripe.checkout.Session:
        return await self._write(
            "checkout.session.create",
            lambda: self.client.v1.checkout.sessions.create_async(
                params, {"idempotency_key": idempotency_key}
            ),
        )

    async def retrieve_checkout_session(
        self, session_id: str, expand: list[str]
    ) -> stripe.checkout.Session:
        return await self._read(
            "checkout.session.retrieve",
            lambda: self.client.v1.checkout.sessions.retrieve_async(
                session_id, {"expand": expand} if expand else None
            ),
        )

    async def expire_checkout_session(
        self, session_id: str, idempotency_key: str
    ) -> stripe.checkout.Session:
        return await self._write(
            "checkout.session.expire",
            lambda: self.client.v1.checkout.sessions.expire_async(
                session_id, None, {"idempotency_key": idempotency_key}
            ),
        )

    # Prices ---------------------------------------------------------------------------------

    async def retrieve_price(self, price_id: str) -> stripe.Price:
        return await self._read(
            "price.retrieve", lambda: self.client.v1.prices.retrieve_async(price_id)
        )

    async def list_prices(self, params: PriceListParams) -> stripe.ListObject[stripe.Price]:
        return await self._read("price.list", lambda: self.client.v1.prices.list_async(params))

    # Refunds --------------------------------------------------------------------------------

    async def create_refund(
        self, params: RefundCreateParams, idempotency_key: str
    ) -> stripe.Refund:
        return await self._write(
            "refund.create",
            lambda: self.client.v1.refunds.create_async(
                params, {"idempotency_key": idempotency_key}
            ),
        )

    async def retrieve_refund(self, refund_id: str) -> stripe.Refund:
        return await self._read(
            "refund.retrieve", lambda: self.client.v1.refunds.retrieve_async(refund_id)
        )

    # Subscriptions and invoices -------------------------------------------------------------

    async def create_subscription(
        self, params: SubscriptionCreateParams, idempotency_key: str
    ) -> stripe.Subscription:
        return await self._write(
            "subscription.create",
            lambda: self.client.v1.subscriptions.create_async(
                params, {"idempotency_key": idempotency_key}
            ),
        )

    async def retrieve_subscription(
        self, subscription_id: str, expand: list[str] | None = None
    ) -> stripe.Subscription:
        return await self._read(
            "subscription.retrieve",
            lambda: self.client.v1.subscriptions.retrieve_async(
                subscription_id, {"expand": expand} if expand else None
            ),
        )

    async def update_subscription(
        self, subscription_id: str, params: SubscriptionUpdateParams, idempotency_key: str
    ) -> stripe.Subscription:
        return await self._write(
            "subscription.update",
            lambda: self.client.v1.subscriptions.update_async(
                subscription_id, params, {"idempotency_key": idempotency_key}
            ),
        )

    async def cancel_subscription(
        self, subscription_id: str, params: SubscriptionCancelParams, idempotency_key: str
    ) -> stripe.Subscription:
        return await self._write(
            "subscription.cancel",
            lambda: self.client.v1.subscriptions.cancel_async(
                subscription_id, params, {"idempotency_key": idempotency_key}
            ),
        )

    async def list_subscriptions(
        self, params: SubscriptionListParams
    ) -> AsyncIterator[stripe.Subscription]:
        """Every subscription matching `params`, newest first, one page request at a time."""
        pages = self.client.v1.subscriptions.list_async
        async for subscription in self._every("subscription.list", pages, params):
            yield subscription

    async def retrieve_invoice(self, invoice_id: str) -> stripe.Invoice:
        return await self._read(
            "invoice.retrieve", lambda: self.client.v1.invoices.retrieve_async(invoice_id)
        )

    async def list_invoices(self, params: InvoiceListParams) -> AsyncIterator[stripe.Invoice]:
        """Every invoice matching `params`, newest first, one page request at a time."""
        async for invoice in self._every(
            "invoice.list", self.client.v1.invoices.list_async, params
        ):
            yield invoice

    # Events ---------------------------------------------------------------------------------

    async def retrieve_event(self, event_id: str) -> stripe.Event:
        return await self._read(
            "event.retrieve", lambda: self.client.v1.events.retrieve_async(event_id)
        )

    async def list_events(self, params: EventListParams) -> AsyncIterator[stripe.Event]:
        """Every event matching `params`, newest first, one page request at a time."""
        async for event in self._every("event.list", self.client.v1.events.list_async, params):
            yield event

    # Webhook endpoints ------------------------------------------------------------------------

    async def create_webhook_endpoint(
        self, params: WebhookEndpointCreateParams, idempotency_key: str
    ) -> stripe.WebhookEndpoint:
        return await self._write(
            "webhook_endpoint.create",
            lambda: self.client.v1.webhook_endpoints.create_async(
                params, {"idempotency_key": idempotency_key}
            ),
        )

    async def list_webhook_endpoints(
        self, params: WebhookEndpointListParams
    ) -> stripe.ListObject[stripe.WebhookEndpoint]:
        return await self._read(
            "webhook_endpoint.list", lambda: self.client.v1.webhook_endpoints.list_async(params)
        )

    # Test clocks (test mode and the emulator only) --------------------------------------------

    async def create_test_clock(
        self, params: TestClockCreateParams, idempotency_key: str
    ) -> stripe.test_helpers.TestClock:
        return await self._write(
            "test_clock.create",
            lambda: self.client.v1.test_helpers.test_clocks.create_async(
                params, {"idempotency_key": idempotency_key}
            ),
        )

    async def retrieve_test_clock(self, clock_id: str) -> stripe.test_helpers.TestClock:
        return await self._read(
            "test_clock.retrieve",
            lambda: self.client.v1.test_helpers.test_clocks.retrieve_async(clock_id),
        )

    async def advance_test_clock(
        self, clock_id: str, params: TestClockAdvanceParams, idempotency_key: str
    ) -> stripe.test_helpers.TestClock:
        return await self._write(
            "test_clock.advance",
            lambda: self.client.v1.test_helpers.test_clocks.advance_async(
                clock_id, params, {"idempotency_key": idempotency_key}
            ),
        )

    # ---------------------------------------------------------------------------------------

    async def _every(
        self,
        operation: str,
        list_page: Callable[[Any], Awaitable[stripe.ListObject[Listed]]],
        params: Mapping[str, Any],
    ) -> AsyncIterator[Listed]:
        page_params = dict(params)
        while True:
            page = await self._read(operation, lambda: list_page(page_params))
            for item in page.data:
                yield item
            if not page.has_more or not page.data:
                return
            page_params["starting_after"] = page.data[-1]["id"]

    async def _write(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        started_executing()
        return await self._call(operation, call, write=True)

    async def _read(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        return await self._call(operation, call, write=False)

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]], *, write: bool) -> T:
        retries = 0
        while True:
            started = time.perf_counter()
            outcome = "ok"
            request_id: str | None = None
            wait = 0.0
            try:
                result = await call()
                response = (
                    result
                    if isinstance(result, stripe.StripeResponse)
                    else getattr(result, "last_response", None)
                )
                request_id = getattr(response, "request_id", None)
                return result
            except stripe.RateLimitError as exc:
                outcome = type(exc).__name__
                request_id = exc.request_id
                if retries >= self.rate_limit_retries:
                    raise translate(exc, write=write) from exc
                wait = min(_retry_after(exc), self.rate_limit_max_wait)
            except stripe.StripeError as exc:
                outcome = type(exc).__name__
                request_id = exc.request_id
                raise translate(exc, write=write) from exc
            except Exception as exc:
                # Not an answer from Stripe (an error of the HTTP client or the SDK itself):
                # whether a write reached Stripe is unknown.
                outcome = type(exc).__name__
                log.exception("stripe.%s: %s", operation, outcome)
                raise _unreachable(write) from exc
            except BaseException as exc:
                outcome = type(exc).__name__
                raise
            finally:
                duration = time.perf_counter() - started
                log.info(
                    "stripe.%s",
                    operation,
                    extra={
                        "operation": operation,
                        "stripe_request_id": request_id,
                        "duration_ms": round(duration * 1000, 1),
                        "outcome": outcome,
                    },
                )
                if self.metrics is not None:
                    self.metrics.stripe_seconds.labels(operation, outcome).observe(duration)
                    if outcome != "ok":
                        self.metrics.stripe_errors.labels(operation, outcome).inc()
            retries += 1
            await asyncio.sleep(wait)


def _retry_after(exc: stripe.StripeError) -> float:
    """Stripe's `Retry-After` in seconds (1 when absent or not a number of seconds)."""
    try:
        return max(0.0, float((exc.headers or {}).get("Retry-After") or 1))
    except ValueError:
        return 1.0


def translate(exc: stripe.StripeError, *, write: bool) -> AppError:
    """A Stripe SDK error as the service's error: a refusal as what Stripe refused, anything
    else on a write as `OutcomeUnknown` (see the module's doc)."""
    error = exc.error
    message = (error.message if error else None) or exc.user_message or "Stripe error."
    code = error.code if error else None
    param = error.param if error else None
    if isinstance(exc, stripe.CardError):
        extra: dict[str, Any] = {}
        if error is not None and error.decline_code:
            extra["decline_code"] = error.decline_code
        if error is not None and error.payment_intent is not None:
            extra["payment_intent"] = error.payment_intent.id
        return CardDeclined(message, code=code or "card_declined", param=param, **extra)
    if isinstance(exc, stripe.RateLimitError):
        retry_after = (exc.headers or {}).get("Retry-After") or "1"
        return StripeUnavailable(
            "Stripe is rate limiting requests; retry later.", headers={"Retry-After": retry_after}
        )
    if isinstance(exc, stripe.IdempotencyError):
        return Conflict(message, code="idempotency_error")
    if isinstance(exc, stripe.InvalidRequestError):
        if exc.http_status == 404:
            return NotFound(message, param=param)
        return InvalidRequest(message, code=code, param=param)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return StripeFailure(
            f"Stripe refused the service's credentials: {message}", code="stripe_auth_error"
        )
    if isinstance(exc, stripe.APIConnectionError):
        return _unreachable(write)
    if write:
        return OutcomeUnknown(
            "Stripe did not complete this call (HTTP "
            f"{exc.http_status or 'none'}{f', {code}' if code else ''}); its outcome is unknown. "
            "Retry with the same Idempotency-Key.",
            headers={"Retry-After": "1"},
        )
    return StripeUnavailable("Stripe is failing; retry later.", headers={"Retry-After": "1"})


def _unreachable(write: bool) -> AppError:
    if write:
        return OutcomeUnknown(
            "Stripe could not be reached; the outcome of this call is unknown. Retry with the "
            "same Idempotency-Key.",
            headers={"Retry-After": "1"},
        )
    return StripeUnavailable("Stripe could not be reached.", headers={"Retry-After": "1"})


async def _from_app(request: Request) -> StripeGateway:
    gateway: StripeGateway = request.app.state.stripe
    return gateway


# The gateway the lifespan built, for endpoints: `stripe: Gateway`.
Gateway = Annotated[StripeGateway, Depends(_from_app)]
