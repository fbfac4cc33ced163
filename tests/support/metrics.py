"""Reading a daemon's /metrics as Prometheus would: with its own parser, never a regex."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def samples(port: int, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called `name`."""
    url = f"http://127.0.0.1:{port}/metrics"
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name
    ]


def scrape(port: int, name: str) -> float:
    """The sum of a sample's values over all its labels."""
    return sum(value for _labels, value in samples(port, name))


def histogram_quantile(port: int, name: str, quantile: float) -> float:
    """The upper bound of the bucket holding `quantile` of a histogram's observations."""
    buckets = sorted(
        (float(labels["le"]), value) for labels, value in samples(port, f"{name}_bucket")
    )
    if not buckets or buckets[-1][1] == 0:
        return 0.0
    wanted = quantile * buckets[-1][1]
    return next(bound for bound, count in buckets if count >= wanted)


def scrape_or_zero(port: int, name: str) -> float:
    """0 while the daemon is not listening yet."""
    try:
        return scrape(port, name)
    except OSError:
        return 0.0
