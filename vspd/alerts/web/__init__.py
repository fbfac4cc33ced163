"""The live page of the alerts daemon."""
