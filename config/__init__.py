# The service's version: GET /v1/health and the OpenAPI schema's info.version report it (settings.VERSION).
# Defined before the Celery app is imported, so that settings can read it whatever imports first.
__version__ = "0.3.0"

from .celery import app as celery_app  # noqa: E402

__all__ = ("__version__", "celery_app")
