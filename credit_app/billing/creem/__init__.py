"""The typed boundary with Creem: `events` reads its webhooks, `client` calls its API."""
