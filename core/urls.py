from django.urls import path

from core.api.health import HealthApi, HealthLiveApi

urlpatterns = [
    path("health", HealthApi.as_view(), name="health"),
    path("health/live", HealthLiveApi.as_view(), name="health-live"),
]
