"""Test helpers: a real Kafka-protocol broker, real child processes, topic readers."""
