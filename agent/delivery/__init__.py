"""From the journal to the backend: identity, journal, HTTP client, sender, reference backend."""
