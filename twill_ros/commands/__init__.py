"""CLI subcommands, one module each; every module exposes ``add_parser(subparsers)`` and
binds ``run(args) -> int`` as the parser's ``func``."""
