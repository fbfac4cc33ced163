"""The alerts and reports daemon: results -> rules -> events -> sinks, exactly once; periodic reports."""
