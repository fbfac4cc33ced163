"""Generated from protos/vspd/legacy (the original design's Detector contract)."""
