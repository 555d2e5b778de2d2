"""Process helpers for tests: the same ones the local stack (infra/local) uses."""

from infra.local.processes import ServerProcess, free_port, port_open

__all__ = ["ServerProcess", "free_port", "port_open"]
