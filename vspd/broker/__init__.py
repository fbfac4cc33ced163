"""The processing broker: frames -> gRPC processor -> results in capture order per camera."""
