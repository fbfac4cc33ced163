"""The pipeline seen from Kafka alone: cameras, lag, dead letters (`vspd status`)."""
