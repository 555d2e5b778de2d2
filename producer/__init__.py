"""The producer side: the `Producer` API for backend services and the `genqueue` command line.

Depends on shared/ only and enqueues by task name, so a backend service installs it without the worker stack.
"""

from producer.api import Producer

__all__ = ["Producer"]
