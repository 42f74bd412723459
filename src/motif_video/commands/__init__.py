"""One module per `motif-video` subcommand; each exposes `register(subparsers)` and sets `func` on its parser."""
