"""`python -m producer` is the `genqueue` command."""

from producer.cli import main

main()
