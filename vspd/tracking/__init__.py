"""Object tracking on each camera's ordered stream of detections (see tracker.py)."""
