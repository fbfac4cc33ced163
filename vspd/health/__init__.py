"""Generated from protos/vspd/health (the standard grpc.health.v1 service)."""
