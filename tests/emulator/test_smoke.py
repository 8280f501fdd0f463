import stripe


class TestSmoke:
    def test_events_list_is_a_list_object(self, client: stripe.StripeClient) -> None:
        events = client.v1.events.list()
        assert events.object == "list"
        assert events.data == []
