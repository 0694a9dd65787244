"""Reading GET /metrics in tests: the text exposition of every process's series, parsed; values are read as deltas
(the counters of earlier tests of the run are in the same files)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def scrape(client) -> dict[tuple[str, frozenset], float]:
    """{(sample name, its labels): value} of a GET /metrics made with Django's test client (from 127.0.0.1)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples carrying at least these labels (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, sample_labels), v in samples.items() if n == name and wanted <= sample_labels)
