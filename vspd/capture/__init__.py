"""The capture daemon: camera sources -> JPEG -> vspd.v1.Frame -> Kafka, never blocking the camera."""
