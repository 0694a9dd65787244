from django.apps import AppConfig


class BroadcastsConfig(AppConfig):
    name = "broadcasts"
    verbose_name = "Broadcasts"

    def ready(self) -> None:
        # GET /metrics computes the pending sends, the oldest one's age and the channels' rates at scrape time.
        from broadcasts.metrics import DeliveryCollector
        from core.metrics import scrape_collector_register

        scrape_collector_register("broadcasts_delivery", DeliveryCollector())

        # A raised messaging limit wakes the sends waiting for it (the tokens app sends it, knowing nothing of us).
        from broadcasts.rules.limit_wakes import on_messaging_limit_changed
        from tokens.limits import messaging_limit_changed

        messaging_limit_changed.connect(on_messaging_limit_changed, dispatch_uid="broadcasts.limit_wakes")
