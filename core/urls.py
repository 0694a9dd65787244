from django.urls import path

from core.api.health import HealthApi

urlpatterns = [
    path("health", HealthApi.as_view(), name="health"),
]
