"""What every vspd daemon shares: lifecycle, systemd notify, logging, metrics, Kafka settings."""
