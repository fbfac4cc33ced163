"""Generated from protos/vspd/health/v1 by the build."""
