"""Operators' commands: ``python -m signal_hub.admin create-admin EMAIL``.

An admin account is made only here, never by signup. The password comes from the prompt, or from
``ADMIN_PASSWORD`` when no terminal is attached (a deployment job). The command writes to the
store the hub uses (``MONGODB_URL``, or the embedded store's journal, which must not be open in a
running hub: stop it, run this, start it again) and records the creation in the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from pydantic import EmailStr, TypeAdapter, ValidationError
from pymongo.errors import DuplicateKeyError

from signal_hub import audit
from signal_hub.auth import hash_password
from signal_hub.embedded_store import StoreInUse
from signal_hub.settings import get_settings
from signal_hub.store import Store, new_id, utcnow

MIN_PASSWORD = 12


class AdminError(Exception):
    """A refusal of the command, said in one line."""


def read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password for the new admin: ")
        if getpass.getpass("Again: ") != first:
            raise AdminError("the two passwords differ")
        password = first
    else:
        password = os.environ.get("ADMIN_PASSWORD", "")
        if not password:
            raise AdminError("no terminal to ask on: set ADMIN_PASSWORD")
    if len(password) < MIN_PASSWORD:
        raise AdminError(f"an admin password needs at least {MIN_PASSWORD} characters")
    return password


async def create_admin(email: str, password: str, name: str | None) -> str:
    try:
        email = TypeAdapter(EmailStr).validate_python(email).lower()
    except ValidationError:
        raise AdminError(f"{email!r} is not an email address") from None
    try:
        store = Store.open(get_settings())
    except StoreInUse as exc:
        raise AdminError(f"{exc}: stop the hub, run this, start it again") from None
    try:
        await store.ensure_indexes()
        user_id = new_id()
        user = {
            "_id": user_id,
            "email": email,
            "password_hash": await hash_password(password),
            "role": "admin",
            "display_name": name or email.split("@")[0],
            "created_at": utcnow(),
        }
        try:
            await store.users.insert_one(user)
        except DuplicateKeyError:
            raise AdminError(f"an account with the email {email} exists already") from None
        await audit.record(store, audit.OPERATOR_CLI, "create_admin", "user", user_id,
                           {"email": email})  # fmt: skip
        return user_id
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m signal_hub.admin")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-admin", help="create an operator account")
    create.add_argument("email")
    create.add_argument("--name", help="display name (default: the email's local part)")
    args = parser.parse_args()
    try:
        user_id = asyncio.run(create_admin(args.email, read_password(), args.name))
    except AdminError as exc:
        sys.stderr.write(f"python -m signal_hub.admin: error: {exc}\n")
        raise SystemExit(1) from None
    print(f"admin {args.email} created (id {user_id})")


if __name__ == "__main__":
    main()
