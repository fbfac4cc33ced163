"""The alerts and reports daemon: results -> rules -> events (each raised once) -> sinks (at least once, with a stable event id); periodic reports."""
