from django.apps import AppConfig


class BroadcastsConfig(AppConfig):
    name = "broadcasts"
    verbose_name = "Broadcasts"

    def ready(self) -> None:
        # GET /metrics computes the pending sends, the oldest one's age and the channels' rates at scrape time.
        from broadcasts.metrics import DeliveryCollector
        from core.metrics import scrape_collector_register

        scrape_collector_register("broadcasts_delivery", DeliveryCollector())
