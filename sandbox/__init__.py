"""A stand-in vendor HTTP server speaking every provider dialect genqueue talks to, with faults on demand.

`start_in_thread(SandboxConfig(port=0))` for tests, `serve(config)` (or `python -m sandbox`) for a process.
Dialects live under their path prefixes (`/vicsee`, `/veogen`, `/gateway`, `/veo3api`, `/sandbox`); outputs
under `/files/`; steering and counters under `/_control/` (see sandbox.control).
"""

from __future__ import annotations

from sandbox.config import Fault, SandboxConfig, parse_fault
from sandbox.server import SandboxServer, serve, start_in_thread

__all__ = ["Fault", "SandboxConfig", "SandboxServer", "parse_fault", "serve", "start_in_thread"]
