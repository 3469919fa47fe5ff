"""Guarded workflows for the KMS keys of a bring-your-own-key data pipeline."""

__version__ = "0.1.0"
