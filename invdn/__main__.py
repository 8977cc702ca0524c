"""`python -m invdn` behaves as the `invdn` command."""

from invdn.cli import main

main(prog_name="invdn")
