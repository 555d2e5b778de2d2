"""Code shared by the producer and the workers: settings, models, the job store, storage, webhooks, providers."""
