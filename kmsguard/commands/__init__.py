"""Click command groups of the kmsguard CLI."""
