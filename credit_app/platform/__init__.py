"""The platform layer: configuration, the embedded servers, extensions, PostgreSQL and Redis
plumbing, logs, metrics, health, mail transport and storage. It imports nothing above it
(no domain, no web)."""
