"""Basic-auth checks: which hashes are accepted, what is remembered, and how failing clients are slowed."""

from __future__ import annotations

import bcrypt
import pytest

from ccs_exporter.web.auth import (
    MAX_BCRYPT_COST,
    BasicAuthChecker,
    FailureBackoff,
    check_bcrypt_hash,
    client_key,
)

PASSWORD = "Scrape-Pw-9dK2"
SALT_AND_HASH = "X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"  # 53 characters


class TestHashFormat:
    """What ``basic_auth_users`` may hold."""

    @pytest.mark.parametrize("prefix", ["$2y$10$", "$2b$04$", "$2a$12$", f"$2y${MAX_BCRYPT_COST}$"])
    def test_bcrypt_hashes_pass(self, prefix: str) -> None:
        """htpasswd's $2y$ and the other bcrypt variants pass at costs 4 to the maximum."""
        assert check_bcrypt_hash(prefix + SALT_AND_HASH) == prefix + SALT_AND_HASH

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("$2y$10$garbage", "not a bcrypt hash"),
            ("plain-text-password", "not a bcrypt hash"),
            ("$2y$10$" + SALT_AND_HASH + "x", "not a bcrypt hash"),
            ("$2y$10$" + SALT_AND_HASH[:-1] + "!", "not a bcrypt hash"),
            ("$1$abc$" + SALT_AND_HASH, "not a bcrypt hash"),
            ("$2y$99$x", "cost 99"),
            (f"$2y${MAX_BCRYPT_COST + 1}$" + SALT_AND_HASH, f"cost {MAX_BCRYPT_COST + 1}"),
            ("$2y$03$" + SALT_AND_HASH, "cost 3"),
        ],
    )
    def test_bad_hashes_are_refused_without_echo(self, value: str, message: str) -> None:
        """A malformed hash or an impossible cost is refused, and the message never repeats the value."""
        with pytest.raises(ValueError, match=message) as caught:
            check_bcrypt_hash(value)
        assert value not in str(caught.value) and "garbage" not in str(caught.value)


class TestBasicAuthChecker:
    """The password check itself."""

    @pytest.fixture
    def hashed(self) -> str:
        """PASSWORD hashed at cost 4 ($2y$, as htpasswd writes it)."""
        return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)

    def test_right_and_wrong(self, hashed: str) -> None:
        """The right user and password pass; a wrong password or an unknown user do not."""
        checker = BasicAuthChecker({"prometheus": hashed})
        assert checker.check("prometheus", PASSWORD)
        assert not checker.check("prometheus", PASSWORD + "x")
        assert not checker.check("nobody", PASSWORD)

    def test_answers_are_remembered(self, hashed: str) -> None:
        """After one bcrypt check, the same pair (right or wrong) is answered from memory."""
        checker = BasicAuthChecker({"prometheus": hashed})
        assert checker.cached("prometheus", PASSWORD) is None
        assert checker.verify("prometheus", PASSWORD) is True
        assert checker.verify("prometheus", "wrong") is False
        assert checker.cached("prometheus", PASSWORD) is True
        assert checker.cached("prometheus", "wrong") is False
        assert checker.cached("prometheus", "other") is None

    def test_unknown_user_costs_as_much_as_a_known_one(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unknown user is checked against a hash of the configured cost, so timing hides user names."""
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=6)).decode()
        checker = BasicAuthChecker({"prometheus": hashed})
        compared: list[bytes] = []
        real = bcrypt.checkpw
        monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: compared.append(h) or real(pw, h))
        assert not checker.check("nobody", PASSWORD)
        assert not checker.check("prometheus", "wrong")
        assert [h[:7] for h in compared] == [b"$2b$06$", b"$2b$06$"]

    def test_long_passwords_count_their_first_72_bytes(self) -> None:
        """As with htpasswd and Go, bcrypt reads 72 bytes: a longer password works, its tail ignored."""
        long_password = "p" * 72
        hashed = bcrypt.hashpw(long_password.encode(), bcrypt.gensalt(rounds=4)).decode()
        checker = BasicAuthChecker({"prometheus": hashed})
        assert checker.check("prometheus", long_password + "-tail")

    @pytest.mark.parametrize("password", ["with\0nul", "\udcff-lone-surrogate", ""])
    def test_odd_passwords_are_just_wrong(self, hashed: str, password: str) -> None:
        """NUL bytes, undecodable characters and empty passwords are refused, never an exception."""
        assert not BasicAuthChecker({"prometheus": hashed}).check("prometheus", password)


class TestFailureBackoff:
    """Per-client waits after failed logins."""

    @pytest.fixture
    def clock(self) -> list[float]:
        """A clock the test moves by hand."""
        return [1000.0]

    def test_a_few_failures_are_free_then_waits_double(self, clock: list[float]) -> None:
        """Five failures cost nothing; then the wait doubles per failure up to the ceiling."""
        backoff = FailureBackoff(free_failures=5, first_wait=1, max_wait=8, clock=lambda: clock[0])
        waits = []
        for _ in range(10):
            backoff.failed("10.0.0.1")
            waits.append(backoff.wait_seconds("10.0.0.1"))
        assert waits == [0, 0, 0, 0, 0, 1, 2, 4, 8, 8]
        clock[0] += 3
        assert backoff.wait_seconds("10.0.0.1") == 5
        assert backoff.wait_seconds("10.0.0.2") == 0

    def test_success_and_time_forgive(self, clock: list[float]) -> None:
        """A successful login, or ten quiet minutes, clear a client's failures."""
        backoff = FailureBackoff(free_failures=1, clock=lambda: clock[0])
        for _ in range(3):
            backoff.failed("10.0.0.1")
            backoff.failed("10.0.0.2")
        backoff.succeeded("10.0.0.1")
        assert backoff.wait_seconds("10.0.0.1") == 0
        assert backoff.wait_seconds("10.0.0.2") > 0
        clock[0] += 601
        assert backoff.wait_seconds("10.0.0.2") == 0
        backoff.failed("10.0.0.2")
        assert backoff.wait_seconds("10.0.0.2") == 0  # counted from scratch: one free failure

    def test_the_table_is_bounded(self, clock: list[float]) -> None:
        """Failures from more clients than the bound keep only the most recent ones."""
        backoff = FailureBackoff(free_failures=0, max_clients=100, clock=lambda: clock[0])
        for n in range(1000):
            backoff.failed(f"10.0.{n // 256}.{n % 256}")
        assert backoff.wait_seconds("10.0.0.0") == 0  # forgotten
        assert backoff.wait_seconds("10.0.3.231") > 0  # the last one

    @pytest.mark.parametrize(
        ("address", "key"),
        [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
            ("fe80::1%eth0", "fe80::/64"),
        ],
    )
    def test_ipv6_clients_are_grouped_by_64(self, address: str, key: str) -> None:
        """An IPv6 host owns a /64, so addresses in one /64 share one backoff; mapped IPv4 is IPv4."""
        assert client_key(address) == key
