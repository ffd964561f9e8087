"""`skylift users ...`: console and API users, written straight to the database `skylift serve` uses.

The first admin has no token to call the API with, so these commands open the database themselves,
with the same SKYLIFT_* settings (and migrations) as `skylift serve`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from skylift import startup
from skylift.config import Settings, credentials_keyring
from skylift.db.migrate import upgrade_to_head
from skylift.db.session import Database
from skylift.kit import sealing
from skylift.kit.clock import SystemClock
from skylift.kit.errors import SkyliftError
from skylift.system import audit, users
from skylift.system.users import ROLES, UserCreate

users_app = typer.Typer(help="Users of the console and the API.", no_args_is_help=True)
console = Console(stderr=True)
CLI_ACTOR = "command line"


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        # One line; the newline that ends it is not part of the password.
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


async def _create(settings: Settings, body: UserCreate) -> int:
    # Imported here: the app module pulls in the whole server, which `skylift --help` does not need.
    from skylift.app import protect_data_dir

    protect_data_dir(settings.data_dir)
    sealing.use(credentials_keyring(settings))
    database = Database(settings.resolved_database_url)
    try:
        await upgrade_to_head(database)
        async with database.transaction() as session:
            user = await users.create_user(session, body)
            actor = audit.Actor(name=CLI_ACTOR, at=SystemClock().now(), role="admin")
            audit.record(session, actor, "user.create", "user", user.id, name=user.name, role=user.role)
            return user.id
    finally:
        await database.dispose()


@users_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The user's name (letters, digits and _ . @ -)")],
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(reversed(ROLES))}")] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input")
    ] = False,
) -> None:
    """Create a user (the first admin: `skylift users create NAME --role admin`); asks for the password."""
    if role not in ROLES:
        console.print(f"skylift: --role is one of {', '.join(reversed(ROLES))}, not {role!r}", markup=False)
        raise typer.Exit(2)
    try:
        settings = startup.load_settings()
    except startup.StartupError as exc:
        console.print(f"skylift: {exc}", markup=False)
        raise typer.Exit(1) from None
    try:
        body = UserCreate(name=name, role=role, password=_password(password_stdin))
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            console.print(f"skylift: {field}: {error['msg']}", markup=False)
        raise typer.Exit(2) from None
    try:
        user_id = asyncio.run(_create(settings, body))
    except SkyliftError as exc:
        console.print(f"skylift: {exc.message}", markup=False)
        raise typer.Exit(1) from None
    console.print(f"user {name} ({role}) created with id {user_id}", markup=False, highlight=False)
