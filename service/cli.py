"""The `cspm-watch` command line: parse, call, print.

Each command stays thin: it parses options, calls the module that does the work and prints the
result. Errors the service raises on purpose become one line on standard error and a non-zero
exit code, never a traceback.
"""

from __future__ import annotations

import click

from service import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cspm-watch")
def cli() -> None:
    """Keep watch over DigitalOcean teams through the DigitalOcean Security (CSPM) API."""


def main() -> None:
    cli()
