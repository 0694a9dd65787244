"""Settings of the ingest benchmark's web process: the service's, plus the naive baseline's URL."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.ingest_urls"
# The benchmark posts far more than a customer's per-token limit allows.
API_RATE_LIMITS = "1000000/min"
API_ORG_RATE_LIMITS = "1000000/min"
