"""Users, roles, sign-in and its slowing down, sessions and API tokens (skylift.system.users, access)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.db.migrate import upgrade_to_head
from skylift.db.session import Database
from skylift.kit.errors import Conflict
from skylift.system import access, users
from skylift.system.models import ApiToken, User, UserSession
from skylift.system.users import TooManySignIns, UserCreate, UserPatch, role_allows

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
T = TypeVar("T")


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'skylift.db'}")
    asyncio.run(upgrade_to_head(database))
    return database


def run(database: Database, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def go() -> T:
        async with database.transaction() as session:
            return await work(session)

    return asyncio.run(go())


def make(database: Database, name: str, role: users.Role = "operator", password: str = "correct horse") -> User:
    return run(database, lambda s: users.create_user(s, UserCreate(name=name, role=role, password=password)))


class TestRoles:
    @pytest.mark.parametrize(
        ("role", "needed", "allowed"),
        [
            ("admin", "admin", True),
            ("admin", "viewer", True),
            ("operator", "operator", True),
            ("operator", "admin", False),
            ("viewer", "viewer", True),
            ("viewer", "operator", False),
            ("boss", "viewer", False),
        ],
    )
    def test_roles_are_ordered(self, role: str, needed: users.Role, allowed: bool) -> None:
        assert role_allows(role, needed) is allowed


class TestPasswords:
    def test_the_password_is_kept_as_an_argon2id_hash(self, database: Database) -> None:
        user = make(database, "ann", password="a long secret")
        assert user.password_hash.startswith("$argon2id$")
        assert "a long secret" not in user.password_hash

    def test_the_right_password_signs_in(self, database: Database) -> None:
        make(database, "ann")
        user = run(database, lambda s: users.sign_in(s, "ann", "correct horse", NOW))
        assert user is not None
        assert user.name == "ann"
        assert user.last_sign_in_at == NOW

    @pytest.mark.parametrize(("name", "password"), [("ann", "wrong horse"), ("nobody", "correct horse")])
    def test_a_wrong_password_or_name_is_the_same_refusal(self, database: Database, name: str, password: str) -> None:
        make(database, "ann")
        assert run(database, lambda s: users.sign_in(s, name, password, NOW)) is None

    def test_a_disabled_user_cannot_sign_in(self, database: Database) -> None:
        make(database, "ann")
        make(database, "root", role="admin")
        user = make(database, "bob")
        run(database, lambda s: users.update_user(s, user.id, UserPatch(enabled=False)))
        assert run(database, lambda s: users.sign_in(s, "bob", "correct horse", NOW)) is None


class TestFailedSignInsAreSlowed:
    def fail(self, database: Database, at: datetime) -> None:
        assert run(database, lambda s: users.sign_in(s, "ann", "wrong", at)) is None

    def test_from_the_third_failure_on_the_user_waits_doubling(self, database: Database) -> None:
        make(database, "ann")
        self.fail(database, NOW)
        self.fail(database, NOW)
        self.fail(database, NOW)  # the third: 2 s to wait
        with pytest.raises(TooManySignIns, match="try again in 2 seconds"):
            run(database, lambda s: users.sign_in(s, "ann", "correct horse", NOW))
        self.fail(database, NOW + timedelta(seconds=2))  # the fourth: 4 s
        with pytest.raises(TooManySignIns, match="4 seconds"):
            run(database, lambda s: users.sign_in(s, "ann", "correct horse", NOW + timedelta(seconds=2)))
        user = run(database, lambda s: users.sign_in(s, "ann", "correct horse", NOW + timedelta(seconds=6)))
        assert user is not None
        assert user.failed_sign_ins == 0
        assert user.blocked_until is None

    def test_the_wait_has_a_ceiling(self, database: Database) -> None:
        make(database, "ann")

        async def many_failures(session: AsyncSession) -> User:
            user = await session.scalar(select(User).where(User.name == "ann"))
            assert user is not None
            user.failed_sign_ins = 40
            return user

        run(database, many_failures)
        self.fail(database, NOW)
        with pytest.raises(TooManySignIns, match="900 seconds"):
            run(database, lambda s: users.sign_in(s, "ann", "correct horse", NOW))


class TestTheLastAdmin:
    def test_the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted(self, database: Database) -> None:
        root = make(database, "root", role="admin")
        for change in (UserPatch(role="viewer"), UserPatch(enabled=False)):
            with pytest.raises(Conflict, match="last enabled admin"):
                run(database, lambda s, c=change: users.update_user(s, root.id, c))  # type: ignore[misc]
        with pytest.raises(Conflict):
            run(database, lambda s: users.delete_user(s, root.id))

    def test_with_another_admin_it_can(self, database: Database) -> None:
        root = make(database, "root", role="admin")
        make(database, "second", role="admin")
        assert run(database, lambda s: users.update_user(s, root.id, UserPatch(role="viewer"))).role == "viewer"

    def test_names_are_unique(self, database: Database) -> None:
        make(database, "ann")
        with pytest.raises(Conflict):
            make(database, "ann")


class TestSessions:
    def test_a_session_is_found_by_its_secret_and_only_its_digest_is_kept(self, database: Database) -> None:
        user = make(database, "ann")
        secret = run(database, lambda s: access.open_session(s, user, NOW, HOUR))
        found = run(database, lambda s: access.session_user(s, secret, NOW + timedelta(minutes=5), HOUR))
        assert found is not None
        assert found[0].name == "ann"
        digests = run(database, lambda s: s.scalars(select(UserSession.digest)))
        assert secret not in list(digests)

    def test_a_session_in_use_is_extended_and_an_idle_one_expires(self, database: Database) -> None:
        user = make(database, "ann")
        secret = run(database, lambda s: access.open_session(s, user, NOW, HOUR))
        later = NOW + timedelta(minutes=50)
        assert run(database, lambda s: access.session_user(s, secret, later, HOUR)) is not None
        assert run(database, lambda s: access.session_user(s, secret, later + timedelta(minutes=59), HOUR))
        idle = later + timedelta(minutes=59) + HOUR
        assert run(database, lambda s: access.session_user(s, secret, idle, HOUR)) is None

    def test_signing_out_and_a_new_password_end_sessions(self, database: Database) -> None:
        user = make(database, "ann")
        first = run(database, lambda s: access.open_session(s, user, NOW, HOUR))
        second = run(database, lambda s: access.open_session(s, user, NOW, HOUR))
        run(database, lambda s: access.close_session(s, first))
        assert run(database, lambda s: access.session_user(s, first, NOW, HOUR)) is None
        assert run(database, lambda s: access.session_user(s, second, NOW, HOUR)) is not None
        run(database, lambda s: users.update_user(s, user.id, UserPatch(password="another secret")))
        assert run(database, lambda s: access.session_user(s, second, NOW, HOUR)) is None


class TestApiTokens:
    def test_a_token_acts_as_its_user_and_is_kept_only_as_a_digest(self, database: Database) -> None:
        user = make(database, "ann")
        issued = run(database, lambda s: access.issue_token(s, user, "ci", NOW))
        assert issued.token.startswith(access.TOKEN_PREFIX)
        assert issued.prefix == issued.token[:10]
        found = run(database, lambda s: access.token_user(s, issued.token, NOW))
        assert found is not None
        assert found[0].name == "ann"
        rows = run(database, lambda s: s.execute(text("SELECT * FROM api_tokens")))
        assert issued.token not in repr(list(rows))

    def test_a_revoked_token_or_a_disabled_user_is_refused(self, database: Database) -> None:
        make(database, "root", role="admin")
        user = make(database, "ann")
        kept = run(database, lambda s: access.issue_token(s, user, "kept", NOW))
        revoked = run(database, lambda s: access.issue_token(s, user, "revoked", NOW))
        run(database, lambda s: access.revoke_token(s, user.id, revoked.id))
        assert run(database, lambda s: access.token_user(s, revoked.token, NOW)) is None
        assert run(database, lambda s: access.token_user(s, kept.token, NOW)) is not None
        run(database, lambda s: users.update_user(s, user.id, UserPatch(enabled=False)))
        assert run(database, lambda s: access.token_user(s, kept.token, NOW)) is None

    def test_another_users_token_cannot_be_revoked(self, database: Database) -> None:
        ann = make(database, "ann")
        bob = make(database, "bob")
        issued = run(database, lambda s: access.issue_token(s, ann, "ci", NOW))
        with pytest.raises(Exception, match="no token"):
            run(database, lambda s: access.revoke_token(s, bob.id, issued.id))

    def test_deleting_a_user_deletes_their_tokens(self, database: Database) -> None:
        make(database, "root", role="admin")
        user = make(database, "ann")
        run(database, lambda s: access.issue_token(s, user, "ci", NOW))
        run(database, lambda s: users.delete_user(s, user.id))
        assert list(run(database, lambda s: s.scalars(select(ApiToken)))) == []

    @pytest.mark.parametrize("presented", ["", "sky_", "not-a-token", "sky_" + "x" * 500])
    def test_what_is_no_token_is_refused_without_fuss(self, database: Database, presented: str) -> None:
        assert run(database, lambda s: access.token_user(s, presented, NOW)) is None
