"""The generic workflow engine, its SQLite store and the AWS adapter."""
