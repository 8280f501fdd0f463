"""The relay: hands committed outbox events on to RabbitMQ and to subscribers' webhook endpoints."""
