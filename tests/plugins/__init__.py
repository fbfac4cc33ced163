"""Plug-ins used by the tests, loaded by name exactly as a user's would be."""
