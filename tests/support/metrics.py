"""Reading a daemon's /metrics as Prometheus would: with its own parser, never a regex."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int, name: str) -> float:
    """The sum of a sample's values over all its labels."""
    url = f"http://127.0.0.1:{port}/metrics"
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name
    )


def scrape_or_zero(port: int, name: str) -> float:
    """0 while the daemon is not listening yet."""
    try:
        return scrape(port, name)
    except OSError:
        return 0.0
