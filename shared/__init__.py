"""Code shared by the producer, the workers and the sandbox: settings, models, the job store, storage, webhooks, providers."""
