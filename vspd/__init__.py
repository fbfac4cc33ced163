"""vspd: real-time video analytics for Raspberry Pi camera fleets over Kafka.

capture -> frames topic -> broker (+ processor over gRPC) -> results topic -> alerts
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vspd")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
