"""One module per `invdn` subcommand."""
