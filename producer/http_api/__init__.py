"""The HTTP API: `create_app` (app.py), its routes (jobs.py), keys (auth.py) and errors (problems.py)."""
