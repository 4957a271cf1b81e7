"""The back office's services: each its own package, process and PostgreSQL schema."""
