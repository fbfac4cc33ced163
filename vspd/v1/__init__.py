"""Generated from protos/vspd/v1 by the build (setup.py); never edited by hand."""
