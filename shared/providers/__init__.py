"""Vendor dialects: one adapter module each behind `ProviderAdapter`, a registry, and the model catalog."""
