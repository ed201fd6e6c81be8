"""Tests of the settings: sources, precedence, parsing, and one-line errors that never show the password."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ccs_exporter.errors import ConfigError
from ccs_exporter.settings.config import Settings, load_settings, parse_listen_address
from ccs_exporter.settings.values import parse_job_ids

JOB_A = "23c59087-f3d4-4e05-a39e-3440c58e58fb"
JOB_B = "ff761384-4b49-40b4-97d8-0de38669075a"
PASSWORD = "Canary-Pa55word-x7Q"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without CCS_EXPORTER_* variables from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("CCS_EXPORTER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def required_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The three required settings, from the environment."""
    monkeypatch.setenv("CCS_EXPORTER_URL", "https://ccs.example.com:12431")
    monkeypatch.setenv("CCS_EXPORTER_USERNAME", "CORP\\svc-ccs")
    monkeypatch.setenv("CCS_EXPORTER_PASSWORD", PASSWORD)


def ca_pem() -> str:
    """A self-signed CA certificate in PEM, as a CA bundle holds."""
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CCS internal CA")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a file under tmp_path and return its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def config_error(**overrides: Any) -> ConfigError:
    """The ConfigError that load_settings raises for these overrides."""
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides=overrides)
    return caught.value


class TestSources:
    def test_environment(self, monkeypatch: pytest.MonkeyPatch, required_env: None, tmp_path: Path) -> None:
        """Every documented CCS_EXPORTER_* variable is read."""
        audit = tmp_path / "audit.jsonl"
        for name, value in {
            "PASSWORD_ENCODING": "plain",
            "VERIFY_TLS": "false",
            "REQUEST_TIMEOUT_SECONDS": "12.5",
            "JOB_IDS": JOB_A,
            "POLL_INTERVAL_SECONDS": "30",
            "CONCURRENCY": "4",
            "HISTORY_WINDOW": "5",
            "LISTEN_ADDRESS": "127.0.0.1:9999",
            "AUDIT_LOG": str(audit),
            "LOG_FORMAT": "console",
            "LOG_LEVEL": "DEBUG",
        }.items():
            monkeypatch.setenv(f"CCS_EXPORTER_{name}", value)
        settings = load_settings()
        assert settings.url == "https://ccs.example.com:12431"
        assert settings.username == "CORP\\svc-ccs"
        assert settings.password_value() == PASSWORD
        assert settings.password_encoding == "plain"
        assert settings.verify_tls is False
        assert settings.request_timeout_seconds == 12.5
        assert settings.job_ids == [JOB_A]
        assert settings.poll_interval_seconds == 30
        assert settings.concurrency == 4
        assert settings.history_window == 5
        assert settings.listen == ("127.0.0.1", 9999)
        assert settings.audit_log == audit
        assert settings.log_format == "console"
        assert settings.log_level == "debug"

    def test_defaults(self, required_env: None) -> None:
        """Unset settings take the documented defaults."""
        settings = load_settings()
        assert settings.password_encoding == "base64"
        assert settings.tls_verify is True
        assert settings.request_timeout_seconds == 30
        assert settings.job_ids == []
        assert settings.poll_interval_seconds == 60
        assert settings.concurrency == 8
        assert settings.listen == ("0.0.0.0", 9879)
        assert settings.log_format == "auto" and settings.log_level == "info"
        assert settings.status_metric == "full"

    def test_yaml_file(self, write_file: Callable[[str, str], Path]) -> None:
        """A YAML file with lower-case keys configures everything, the README's example included."""
        password_file = write_file("pw", PASSWORD + "\n")
        ca = write_file("ca.pem", ca_pem())
        config = write_file(
            "config.yaml",
            "url: https://ccs.example.com:12431/\n"
            "username: CORP\\svc-ccs-exporter\n"
            f"password_file: {password_file}\n"
            f"ca_bundle: {ca}\n"
            f"job_ids:\n  - {JOB_A}\n  - {JOB_B.upper()}\n"
            "poll_interval_seconds: 60\n",
        )
        settings = load_settings(config_file=config)
        assert settings.url == "https://ccs.example.com:12431"
        assert settings.username == "CORP\\svc-ccs-exporter"
        assert settings.password_value() == PASSWORD
        assert settings.job_ids == [JOB_A, JOB_B]
        assert settings.tls_verify == str(ca)

    def test_empty_yaml_file(self, required_env: None, write_file: Callable[[str, str], Path]) -> None:
        """An empty file is no settings at all, not an error."""
        assert load_settings(config_file=write_file("empty.yaml", "")).url == "https://ccs.example.com:12431"

    def test_precedence(
        self, monkeypatch: pytest.MonkeyPatch, write_file: Callable[[str, str], Path]
    ) -> None:
        """The file is overridden by the environment, which is overridden by command-line flags."""
        config = write_file(
            "config.yaml",
            "url: https://from-file:12431\nusername: file-user\npassword: file-pw\n"
            "concurrency: 2\npoll_interval_seconds: 10\nhistory_window: 3\n",
        )
        monkeypatch.setenv("CCS_EXPORTER_CONCURRENCY", "5")
        monkeypatch.setenv("CCS_EXPORTER_POLL_INTERVAL_SECONDS", "20")
        settings = load_settings(config_file=config, overrides={"poll_interval_seconds": 40, "url": None})
        assert settings.history_window == 3  # file only
        assert settings.concurrency == 5  # env over file
        assert settings.poll_interval_seconds == 40  # flag over env
        assert settings.url == "https://from-file:12431"  # a flag not given (None) overrides nothing

    def test_unrelated_prefixed_variables_ignored(
        self, monkeypatch: pytest.MonkeyPatch, required_env: None
    ) -> None:
        """Variables Kubernetes injects for a service named ccs-exporter do not stop the program."""
        monkeypatch.setenv("CCS_EXPORTER_PORT", "tcp://10.0.0.1:9879")
        monkeypatch.setenv("CCS_EXPORTER_SERVICE_HOST", "10.0.0.1")
        assert load_settings().concurrency == 8

    def test_settings_class_reads_environment(self, required_env: None) -> None:
        """Settings() reads the environment, like load_settings without a file."""
        assert Settings().url == "https://ccs.example.com:12431"  # type: ignore[call-arg]


class TestJobIds:
    @pytest.mark.parametrize(
        "value",
        [
            f"{JOB_A},{JOB_B}",
            f"{JOB_A}, {JOB_B}",
            f"{JOB_A} {JOB_B}",
            f" {JOB_A}\n{JOB_B} ",
            f'["{JOB_A}", "{JOB_B}"]',
            f"[{JOB_A}, {JOB_B}]",
            f"{JOB_A},{JOB_B},{JOB_A}",
            f"{{{JOB_A.upper()}}},{JOB_B}",
        ],
    )
    def test_environment_forms(self, monkeypatch: pytest.MonkeyPatch, required_env: None, value: str) -> None:
        """Comma- or space-separated and JSON/YAML list forms give the same normalised ids, once each."""
        monkeypatch.setenv("CCS_EXPORTER_JOB_IDS", value)
        assert load_settings().job_ids == [JOB_A, JOB_B]

    def test_yaml_list_in_file(self, required_env: None, write_file: Callable[[str, str], Path]) -> None:
        """A YAML list in the file is read as the ids, normalised."""
        config = write_file("c.yaml", f"job_ids:\n  - '{{{JOB_B.upper()}}}'\n  - {JOB_A}\n")
        assert load_settings(config_file=config).job_ids == [JOB_B, JOB_A]

    @pytest.mark.parametrize("value", ["", "  ", "[]"])
    def test_empty(self, value: str) -> None:
        """An empty value is no job ids."""
        assert parse_job_ids(value) == []

    def test_invalid_id(self, monkeypatch: pytest.MonkeyPatch, required_env: None) -> None:
        """A job id that is not a GUID is a one-line error naming the setting and the bad id."""
        monkeypatch.setenv("CCS_EXPORTER_JOB_IDS", f"{JOB_A},job-42")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        message = str(caught.value)
        assert "CCS_EXPORTER_JOB_IDS" in message and "'job-42'" in message
        assert "\n" not in message
        assert caught.value.field == "job_ids"

    @pytest.mark.parametrize("value", ["[unclosed", "{a: 1}", 42])
    def test_not_a_list(self, value: Any) -> None:
        """A malformed list or a non-list is refused."""
        with pytest.raises(ValueError):
            parse_job_ids(value)


class TestListenAddress:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("0.0.0.0:9879", ("0.0.0.0", 9879)),
            ("[::]:9879", ("::", 9879)),
            ("[::1]:80", ("::1", 80)),
            (":9879", ("0.0.0.0", 9879)),
            ("localhost:0", ("localhost", 0)),
        ],
    )
    def test_valid(self, value: str, expected: tuple[str, int]) -> None:
        """host:port, bracketed IPv6 and an empty host are understood."""
        assert parse_listen_address(value) == expected

    @pytest.mark.parametrize("value", ["localhost", "0.0.0.0:", "0.0.0.0:http", "0.0.0.0:70000", "[zz]:80"])
    def test_invalid(self, required_env: None, value: str) -> None:
        """A bad listen address is a one-line error naming the setting and the value."""
        message = str(config_error(listen_address=value))
        assert "CCS_EXPORTER_LISTEN_ADDRESS" in message and repr(value) in message
        assert "\n" not in message


class TestErrors:
    @pytest.mark.parametrize(
        ("overrides", "setting", "shown"),
        [
            ({"url": "ccs.example.com:12431"}, "CCS_EXPORTER_URL", "'ccs.example.com:12431'"),
            ({"url": "https://"}, "CCS_EXPORTER_URL", "'https://'"),
            ({"url": "ftp://ccs.example.com"}, "CCS_EXPORTER_URL", "'ftp://ccs.example.com'"),
            ({"concurrency": 0}, "CCS_EXPORTER_CONCURRENCY", "0"),
            ({"request_timeout_seconds": "soon"}, "CCS_EXPORTER_REQUEST_TIMEOUT_SECONDS", "'soon'"),
            ({"log_level": "loud"}, "CCS_EXPORTER_LOG_LEVEL", "'loud'"),
            ({"password_encoding": "hex"}, "CCS_EXPORTER_PASSWORD_ENCODING", "'hex'"),
            ({"status_metric": "dense"}, "CCS_EXPORTER_STATUS_METRIC", "'dense'"),
            ({"ca_bundle": "/nonexistent/ca.pem"}, "CCS_EXPORTER_CA_BUNDLE", "/nonexistent/ca.pem"),
            ({"password_file": "/nonexistent/pw"}, "CCS_EXPORTER_PASSWORD_FILE", "/nonexistent/pw"),
        ],
    )
    def test_one_line_naming_setting_and_value(
        self, required_env: None, overrides: dict[str, Any], setting: str, shown: str
    ) -> None:
        """An invalid value is a ConfigError of one line naming the setting and the value."""
        exc = config_error(**overrides)
        message = str(exc)
        assert setting in message and shown in message
        assert "\n" not in message
        assert exc.field == next(iter(overrides))
        assert PASSWORD not in message

    def test_missing_required(self, monkeypatch: pytest.MonkeyPatch, required_env: None) -> None:
        """A missing required setting is named by its environment variable."""
        monkeypatch.delenv("CCS_EXPORTER_URL")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert "CCS_EXPORTER_URL" in str(caught.value) and "required" in str(caught.value)

    def test_missing_password(self, monkeypatch: pytest.MonkeyPatch, required_env: None) -> None:
        """Without a password or a password file the error names both ways to give one."""
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert "CCS_EXPORTER_PASSWORD " in str(caught.value) + " "
        assert "CCS_EXPORTER_PASSWORD_FILE" in str(caught.value)

    def test_password_file_is_a_directory(self, required_env: None, tmp_path: Path) -> None:
        """A password file that cannot be read as a file is refused, naming it."""
        message = str(config_error(password_file=str(tmp_path)))
        assert "CCS_EXPORTER_PASSWORD_FILE" in message and str(tmp_path) in message

    @pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
    def test_password_file_without_permission(
        self, required_env: None, write_file: Callable[[str, str], Path]
    ) -> None:
        """A password file the program may not read is refused when the settings are loaded."""
        path = write_file("pw", PASSWORD)
        path.chmod(0)
        assert "CCS_EXPORTER_PASSWORD_FILE" in str(config_error(password_file=str(path)))

    def test_unknown_key_in_file(self, required_env: None, write_file: Callable[[str, str], Path]) -> None:
        """An unknown key in the file (a misspelling) is an error naming the key."""
        config = write_file("c.yaml", "job_id: 23c59087-f3d4-4e05-a39e-3440c58e58fb\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file=config)
        assert "unknown key 'job_id'" in str(caught.value) and str(config) in str(caught.value)

    @pytest.mark.parametrize("text", ["url: [unclosed\n", "- a list\n- not a mapping\n"])
    def test_bad_yaml_file(
        self, required_env: None, write_file: Callable[[str, str], Path], text: str
    ) -> None:
        """A file that is not a YAML mapping is a one-line error naming the file."""
        config = write_file("c.yaml", text)
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file=config)
        assert str(config) in str(caught.value) and "\n" not in str(caught.value)

    def test_config_file_not_utf8(self, required_env: None, tmp_path: Path) -> None:
        """A config file that is not UTF-8 text (a binary copied by mistake) is one line naming it."""
        config = tmp_path / "c.yaml"
        config.write_bytes(b"url: https://ccs\xff\xfe.example\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file=config)
        assert str(caught.value).startswith(f"config file {config}: cannot read it (")
        assert "\n" not in str(caught.value)

    def test_endless_config_file_is_refused_without_reading_it_all(self, required_env: None) -> None:
        """`--config /dev/zero` (an endless file) is a one-line error, not memory until the OOM killer."""
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file=Path("/dev/zero"))
        assert str(caught.value) == "config file /dev/zero: cannot read it (not a regular file)"

    def test_missing_config_file(self, required_env: None, tmp_path: Path) -> None:
        """A config file that does not exist is an error naming it."""
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file=tmp_path / "nope.yaml")
        assert "nope.yaml" in str(caught.value)

    def test_unknown_override(self, required_env: None) -> None:
        """An unknown setting name is refused."""
        assert "unknown setting 'bogus'" in str(config_error(bogus=1))


class TestPasswordNeverShown:
    @pytest.mark.parametrize("bad_password", [[PASSWORD], {"value": PASSWORD}, 12345678])
    def test_invalid_password_value(
        self, monkeypatch: pytest.MonkeyPatch, required_env: None, bad_password: Any
    ) -> None:
        """An invalid password value is reported by name only."""
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        exc = config_error(password=bad_password)
        assert "CCS_EXPORTER_PASSWORD" in str(exc)
        assert PASSWORD not in str(exc) and "12345678" not in str(exc) and PASSWORD not in repr(exc)

    def test_invalid_password_in_file(
        self, monkeypatch: pytest.MonkeyPatch, required_env: None, write_file: Callable[[str, str], Path]
    ) -> None:
        """An invalid password in the YAML file is reported by name only."""
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        config = write_file("c.yaml", f"password:\n  nested: {PASSWORD}\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file=config)
        assert "password" in str(caught.value) and PASSWORD not in str(caught.value)

    def test_other_errors_do_not_show_it(self, required_env: None) -> None:
        """An error in another setting, with the password set, does not show the password."""
        exc = config_error(url="nope", username="")
        assert PASSWORD not in str(exc) and PASSWORD not in repr(exc)

    def test_settings_repr_hides_it(self, required_env: None) -> None:
        """Printing the settings does not show the password."""
        settings = load_settings()
        assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)


class TestPasswordFile:
    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            (f"{PASSWORD}\n", PASSWORD),
            (f"{PASSWORD}\r\n", PASSWORD),
            (PASSWORD, PASSWORD),
            (" spaced out \n", " spaced out "),
        ],
    )
    def test_trailing_newline_dropped(
        self,
        monkeypatch: pytest.MonkeyPatch,
        required_env: None,
        write_file: Callable[[str, str], Path],
        content: str,
        expected: str,
    ) -> None:
        """The password file's trailing newline is dropped; other characters are kept."""
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        monkeypatch.setenv("CCS_EXPORTER_PASSWORD_FILE", str(write_file("pw", content)))
        assert load_settings().password_value() == expected

    def test_password_wins_over_file(
        self, monkeypatch: pytest.MonkeyPatch, required_env: None, write_file: Callable[[str, str], Path]
    ) -> None:
        """When both are given, the password itself is used."""
        monkeypatch.setenv("CCS_EXPORTER_PASSWORD_FILE", str(write_file("pw", "from-file")))
        assert load_settings().password_value() == PASSWORD

    def test_file_removed_after_loading(
        self, monkeypatch: pytest.MonkeyPatch, required_env: None, write_file: Callable[[str, str], Path]
    ) -> None:
        """A password file gone by the time it is read is a ConfigError naming it, not a crash."""
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        path = write_file("pw", PASSWORD)
        monkeypatch.setenv("CCS_EXPORTER_PASSWORD_FILE", str(path))
        settings = load_settings()
        path.unlink()
        with pytest.raises(ConfigError) as caught:
            settings.password_value()
        assert "CCS_EXPORTER_PASSWORD_FILE" in str(caught.value)


class TestTlsVerify:
    def test_verify_by_default(self, required_env: None) -> None:
        """TLS is verified against the system CAs by default."""
        assert load_settings().tls_verify is True

    def test_ca_bundle(self, required_env: None, write_file: Callable[[str, str], Path]) -> None:
        """A CA bundle is what requests verifies against."""
        ca = write_file("ca.pem", ca_pem())
        assert load_settings(overrides={"ca_bundle": str(ca)}).tls_verify == str(ca)

    def test_ca_bundle_without_certificates(
        self, required_env: None, write_file: Callable[[str, str], Path]
    ) -> None:
        """A CA bundle that holds no PEM certificate is refused at start, naming the setting."""
        ca = write_file("ca.pem", "not a certificate\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(overrides={"ca_bundle": str(ca)})
        assert "CCS_EXPORTER_CA_BUNDLE" in str(caught.value)
        assert "holds no PEM certificate" in str(caught.value)

    def test_disabled(
        self, monkeypatch: pytest.MonkeyPatch, required_env: None, write_file: Callable[[str, str], Path]
    ) -> None:
        """Turning verification off wins over a CA bundle."""
        monkeypatch.setenv("CCS_EXPORTER_VERIFY_TLS", "false")
        monkeypatch.setenv("CCS_EXPORTER_CA_BUNDLE", str(write_file("ca.pem", ca_pem())))
        assert load_settings().tls_verify is False


class TestPasswordCheckedAtStart:
    """A password that cannot work stops the program when the settings load, not at every login."""

    def test_empty_password_variable(self, monkeypatch: pytest.MonkeyPatch, required_env: None) -> None:
        """An empty CCS_EXPORTER_PASSWORD is no password (empty variables unset): an error naming it."""
        monkeypatch.setenv("CCS_EXPORTER_PASSWORD", "")
        exc = config_error()
        assert "CCS_EXPORTER_PASSWORD " in f"{exc} " and "no password" in str(exc)
        assert exc.field == "password"

    @pytest.mark.parametrize("content", [b"", b"\n", b"\r\n"])
    def test_empty_password_file(
        self, monkeypatch: pytest.MonkeyPatch, required_env: None, tmp_path: Path, content: bytes
    ) -> None:
        """A password file holding nothing (or only a newline) is an error naming the file."""
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        path = tmp_path / "pw"
        path.write_bytes(content)
        exc = config_error(password_file=str(path))
        assert "CCS_EXPORTER_PASSWORD_FILE" in str(exc) and str(path) in str(exc) and "empty" in str(exc)

    @pytest.mark.parametrize(
        "content", [b"\xff\xfep\x00w\x00", b"caf\xe9-latin1", PASSWORD.encode() + b"\x80"]
    )
    def test_password_file_not_utf8(
        self, monkeypatch: pytest.MonkeyPatch, required_env: None, tmp_path: Path, content: bytes
    ) -> None:
        """A password file not in UTF-8 (UTF-16, Latin-1) is one line naming the file, not the password."""
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        path = tmp_path / "pw"
        path.write_bytes(content)
        exc = config_error(password_file=str(path))
        message = str(exc)
        assert "CCS_EXPORTER_PASSWORD_FILE" in message and "UTF-8" in message and "\n" not in message
        assert PASSWORD not in message and "latin1" not in message

    def test_byte_order_mark_is_not_part_of_the_password(
        self, monkeypatch: pytest.MonkeyPatch, required_env: None, tmp_path: Path
    ) -> None:
        """A UTF-8 byte order mark an editor put at the start of the file is not part of the password."""
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        path = tmp_path / "pw"
        path.write_bytes(b"\xef\xbb\xbf" + PASSWORD.encode() + b"\n")
        assert load_settings(overrides={"password_file": str(path)}).password_value() == PASSWORD

    @pytest.mark.parametrize("content", [b"", b"\xff\xfe"])
    def test_file_spoiled_after_start(
        self, monkeypatch: pytest.MonkeyPatch, required_env: None, tmp_path: Path, content: bytes
    ) -> None:
        """A password file emptied or garbled while running is a ConfigError at the next read, not a crash."""
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        path = tmp_path / "pw"
        path.write_text(PASSWORD, encoding="utf-8")
        settings = load_settings(overrides={"password_file": str(path)})
        path.write_bytes(content)
        with pytest.raises(ConfigError) as caught:
            settings.password_value()
        assert "CCS_EXPORTER_PASSWORD_FILE" in str(caught.value)


class TestUrlCheckedAtStart:
    """A URL that every request would fail on is refused at start, naming CCS_EXPORTER_URL."""

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("https://ccs.example.com:99999", "port"),
            ("https://ccs.example.com:0", "port"),
            ("https://ccs.example.com:12x31", "port"),
            ("https://ccs.example.com:", "port"),
            ("https://[zz::1]:12431", "host"),
            ("https://[::1:12431", "host"),
            ("https://ccs..example.com", "host"),
            ("https://ccs example.com", "host"),
            ("https://ccs.example.com\t:12431", "host"),
            ("https://.example.com", "host"),
            (f"https://{'a' * 64}.example.com", "host"),
            ("https://ccs.example.com:12431/ccs/api/v1", "/ccs/api/v1"),
        ],
    )
    def test_invalid_part(self, required_env: None, url: str, problem: str) -> None:
        """Each invalid part of the URL is a one-line error naming the setting and the problem."""
        exc = config_error(url=url)
        assert "CCS_EXPORTER_URL" in str(exc) and problem in str(exc) and "\n" not in str(exc)
        assert exc.field == "url"

    @pytest.mark.parametrize(
        "url",
        [
            "https://ccs.example.com:12431",
            "https://ccs.example.com",
            "http://10.1.2.3:12431/",
            "https://[fd00::1]:12431",
            "https://ccs-01.corp.example.com:443/prefix",
            "https://münchen.example.com:12431",
        ],
    )
    def test_valid(self, required_env: None, url: str) -> None:
        """Ordinary base URLs (IPv4, IPv6, a path prefix, an international name) are accepted."""
        assert load_settings(overrides={"url": url}).url == url.rstrip("/")

    @pytest.mark.parametrize(
        "url",
        [
            "https://svc:Url-Secret-77@ccs.example.com:12431",
            "https://Url-Secret-77@ccs.example.com",
            "https://svc:Url-Secret-77@ccs.example.com:99999",
            "svc:Url-Secret-77@ccs.example.com",
            "https://svc:Url-Secret-77@ccs.example.com/?debug=1",
        ],
    )
    def test_credentials_refused_and_never_shown(self, required_env: None, url: str) -> None:
        """Credentials in the URL are refused (sent, they would replace the token) and never echoed."""
        exc = config_error(url=url)
        assert "CCS_EXPORTER_URL" in str(exc)
        assert "Url-Secret-77" not in str(exc) and "Url-Secret-77" not in repr(exc)


class TestNumbersCheckedAtStart:
    @pytest.mark.parametrize("setting", ["request_timeout_seconds", "poll_interval_seconds"])
    @pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", float("nan")])
    def test_not_a_finite_number(self, required_env: None, setting: str, value: Any) -> None:
        """NaN and infinity are named as what they are, not as 'less than or equal to 3600'."""
        message = str(config_error(**{setting: value}))
        assert setting.upper() in message and "finite" in message

    @pytest.mark.parametrize("value", ["-1", "0"])
    def test_negative_timeout(self, required_env: None, value: str) -> None:
        """A timeout of zero or less says it must be greater than 0."""
        assert "greater than 0" in str(config_error(request_timeout_seconds=value))


class TestAuditLogCheckedAtStart:
    """An audit log path the program could never write is refused at start, naming CCS_EXPORTER_AUDIT_LOG."""

    def test_directory(self, required_env: None, tmp_path: Path) -> None:
        """A directory is not an audit log file."""
        message = str(config_error(audit_log=str(tmp_path)))
        assert "CCS_EXPORTER_AUDIT_LOG" in message and "is a directory" in message

    def test_missing_parent(self, required_env: None, tmp_path: Path) -> None:
        """A file in a directory that does not exist names that directory."""
        message = str(config_error(audit_log=str(tmp_path / "nope" / "audit.jsonl")))
        assert "CCS_EXPORTER_AUDIT_LOG" in message and f"{tmp_path / 'nope'} does not exist" in message

    def test_parent_is_a_file(self, required_env: None, write_file: Callable[[str, str], Path]) -> None:
        """A path under a regular file says its parent is not a directory."""
        parent = write_file("plain", "x")
        message = str(config_error(audit_log=str(parent / "audit.jsonl")))
        assert "CCS_EXPORTER_AUDIT_LOG" in message and "not a directory" in message

    @pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
    def test_parent_not_writable(self, required_env: None, tmp_path: Path) -> None:
        """A new file in a directory the program may not write to is refused."""
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            message = str(config_error(audit_log=str(locked / "audit.jsonl")))
        finally:
            locked.chmod(0o700)
        assert "CCS_EXPORTER_AUDIT_LOG" in message and "not writable" in message

    def test_new_and_existing_files_accepted(
        self, required_env: None, write_file: Callable[[str, str], Path]
    ) -> None:
        """A new file in a writable directory, or an existing file, is fine."""
        existing = write_file("audit.jsonl", "")
        assert load_settings(overrides={"audit_log": str(existing)}).audit_log == existing
        fresh = existing.parent / "new.jsonl"
        assert load_settings(overrides={"audit_log": str(fresh)}).audit_log == fresh
        assert not fresh.exists()
