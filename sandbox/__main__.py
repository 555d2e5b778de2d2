"""`python -m sandbox [--host H] [--port P] [--delay S] [--output-bytes N] [--api-key K]... [--fault SPEC]...`

Runs `sandbox.serve` with a SandboxConfig built from the arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sandbox.config import SandboxConfig, parse_fault
from sandbox.server import serve


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve until interrupted; 2 for a bad argument."""
    parser = argparse.ArgumentParser(prog="sandbox", description="Run the genqueue sandbox provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds until a task finishes")
    parser.add_argument("--output-bytes", type=int, default=256 * 1024, help="size of each output file")
    parser.add_argument("--api-key", action="append", help="an accepted key (default: any non-empty key)")
    parser.add_argument(
        "--fault", action="append", default=[], help="e.g. submit:429:count=5:retry_after=2 (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        config = SandboxConfig(
            host=args.host,
            port=args.port,
            delay_seconds=args.delay,
            output_bytes=args.output_bytes,
            api_keys=frozenset(args.api_key) if args.api_key else None,
            faults=[parse_fault(spec) for spec in args.fault],
        )
    except ValueError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
