"""`cspm-watch db upgrade`: apply the pending migrations to a database."""

from __future__ import annotations

from alembic.util import CommandError as AlembicCommandError
from sqlalchemy.exc import SQLAlchemyError

from service.commands.output import print_line
from service.errors import StorageError
from service.logging import redact_text, register_secret
from service.storage import mask_database_url, parse_database_url, upgrade_database

EXIT_OK = 0


async def upgrade_schema(database_url: str) -> int:
    """Migrate the database at `database_url` to the newest revision and print that revision.

    Raise ConfigError for a URL that is not a supported database URL, and StorageError with one
    line, the password masked, when the database cannot be opened or migrated.
    """
    # The password of a URL given on the command line is not registered by the configuration
    # loader, and a driver's message might quote it.
    parsed = parse_database_url(database_url)
    register_secret(parsed.password)
    masked_url = mask_database_url(database_url)
    try:
        revision = await upgrade_database(database_url)
    except (SQLAlchemyError, AlembicCommandError, OSError) as error:
        if parsed.get_backend_name() == "sqlite":
            hint = "check that database_url names a cspm-watch SQLite file or a new one"
        else:
            hint = "check database_url and that the database server accepts connections"
        raise StorageError(
            f"database {masked_url} could not be migrated: {_first_line(error)}: {hint}"
        ) from None
    print_line(f"{masked_url} is at revision {revision}")
    return EXIT_OK


def _first_line(error: BaseException) -> str:
    # SQLAlchemy wraps the driver's error; its own text adds the statement and a link.
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return redact_text(lines[0]) if lines else type(error).__name__
