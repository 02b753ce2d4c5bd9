"""Unit tests of common/settings.py: pure functions of an explicit environment mapping."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_network
from urllib.parse import unquote

import pytest

from common.settings import DEFAULT_RMQ_URL, Settings, SettingsError, mask_password

# Every variable set to a value different from its default, and the field it must end up in.
CUSTOM_ENV = {
    "RMQ_URL": "amqps://alice:s3cret@broker.example:5671/demo",
    "API_URL": "https://api.example/update_task_status_api/",
    "API_HOST": "127.0.0.1",
    "API_PORT": "9090",
    "CALLBACK_TOKEN": "token-for-callbacks",
    "API_TOKEN": "token-for-scripts-and-the-page",
    "RATE_LIMIT": "30/minute",
    "TRUSTED_PROXIES": "proxy,10.0.0.0/8",
    "RMQ_MANAGEMENT_URL": "https://broker.example:15671/",
    "RMQ_MANAGEMENT_PUBLIC_URL": "https://public.example/rabbit/",
    "TASK_COUNTER_PATH": "/var/lib/demo/counter",
    "TASK_STORE_LIMIT": "500",
    "LIVE_STREAM_LIMIT": "20",
    "ALLOWED_HOSTS": "localhost,192.168.1.10",
    "LOG_LEVEL": "DEBUG",
    "LOG_FORMAT": "json",
    "RESULT_BACKEND": "rpc://",
    "BEAT_INTERVAL": "5",
    "FLOWER_PUBLIC_URL": "https://public.example/flower/",
    "RMQ_QUEUE_TYPE": "quorum",
    "TASK_STORE": "redis://redis.example:6379/3",
    "RMQ_CA_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "SECURE": "1",
}
CUSTOM_VALUES = {
    "rmq_url": "amqps://alice:s3cret@broker.example:5671/demo",
    "callback_url": "https://api.example/update_task_status_api/",
    "api_host": "127.0.0.1",
    "api_port": 9090,
    "callback_token": "token-for-callbacks",
    "api_token": "token-for-scripts-and-the-page",
    "rate_limit": "30/minute",
    "trusted_proxies": "proxy,10.0.0.0/8",
    "rmq_management_url": "https://broker.example:15671/",
    "rmq_management_public_url": "https://public.example/rabbit/",
    "task_counter_path": "/var/lib/demo/counter",
    "task_store_limit": 500,
    "live_stream_limit": 20,
    "allowed_hosts": "localhost,192.168.1.10",
    "log_level": "DEBUG",
    "log_format": "json",
    "result_backend": "rpc://",
    "beat_interval": 5,
    "flower_public_url": "https://public.example/flower/",
    "rmq_queue_type": "quorum",
    "task_store": "redis://redis.example:6379/3",
    "rmq_ca_file": "/etc/ssl/certs/ca-certificates.crt",
    "secure": True,
}


def test_empty_environment_gives_the_localhost_defaults() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.rmq_url == DEFAULT_RMQ_URL
    assert settings.callback_url == "http://localhost:8080/update_task_status_api/"
    assert settings.api_host == "0.0.0.0"
    assert settings.api_port == 8080
    assert settings.callback_token == ""
    assert settings.api_token == ""
    assert settings.rate_limit == ""
    assert settings.rate_limit_parts is None
    assert settings.trusted_proxy_parts == ((), ())
    assert settings.rmq_management_url == "http://localhost:15672/"
    assert settings.rmq_management_public_url == "http://localhost:15672/"
    assert settings.task_counter_path == ".state/task_counter"
    assert settings.task_store_limit == 10_000
    assert settings.live_stream_limit == 100
    assert settings.allowed_host_names == {"localhost", "127.0.0.1", "::1", "api"}
    assert settings.log_level == "INFO"


def test_the_test_tables_cover_every_settings_field() -> None:
    assert set(CUSTOM_VALUES) == {field.name for field in dataclasses.fields(Settings)}
    for name, value in CUSTOM_VALUES.items():
        assert getattr(Settings(), name) != value, f"{name}: the custom value is the default"


def test_every_variable_is_honoured() -> None:
    settings = Settings.from_env(CUSTOM_ENV)

    assert dataclasses.asdict(settings) == CUSTOM_VALUES


# SECURE=1 alone is refused by design: it needs the others (its own tests are below).
@pytest.mark.parametrize(
    ("variable", "name"),
    [pair for pair in zip(CUSTOM_ENV, CUSTOM_VALUES, strict=True) if pair[0] != "SECURE"],
)
def test_each_variable_alone_changes_only_its_field(variable: str, name: str) -> None:
    settings = Settings.from_env({variable: CUSTOM_ENV[variable]})

    expected = dataclasses.replace(Settings(), **{name: CUSTOM_VALUES[name]})
    assert settings == expected


def test_an_empty_variable_means_the_default() -> None:
    settings = Settings.from_env({"API_PORT": "", "TASK_STORE_LIMIT": ""})

    assert settings.api_port == 8080
    assert settings.task_store_limit == 10_000


def test_variables_of_other_programs_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/usr/bin", "HOME": "/root"}) == Settings()


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("65535", 65535), ("5672", 5672)])
def test_api_port_in_range_is_accepted(raw: str, value: int) -> None:
    assert Settings.from_env({"API_PORT": raw}).api_port == value


@pytest.mark.parametrize("raw", ["abc", "80.5", "0x50", "0", "-1", "65536", "1e3"])
def test_bad_api_port_is_rejected_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="API_PORT"):
        Settings.from_env({"API_PORT": raw})


@pytest.mark.parametrize(("raw", "value"), [("10", 10), ("10000000", 10**7)])
def test_task_store_limit_in_range_is_accepted(raw: str, value: int) -> None:
    assert Settings.from_env({"TASK_STORE_LIMIT": raw}).task_store_limit == value


@pytest.mark.parametrize("raw", ["lots", "9", "0", "-5", "10000001", "100.0"])
def test_bad_task_store_limit_is_rejected_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="TASK_STORE_LIMIT"):
        Settings.from_env({"TASK_STORE_LIMIT": raw})


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("10000", 10_000)])
def test_live_stream_limit_in_range_is_accepted(raw: str, value: int) -> None:
    assert Settings.from_env({"LIVE_STREAM_LIMIT": raw}).live_stream_limit == value


@pytest.mark.parametrize("raw", ["many", "0", "-1", "10001", "2.5"])
def test_bad_live_stream_limit_is_rejected_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="LIVE_STREAM_LIMIT"):
        Settings.from_env({"LIVE_STREAM_LIMIT": raw})


@pytest.mark.parametrize(
    "url",
    ["http://student:qwerty@localhost:5672/", "localhost:5672", "rabbitmq", "redis://localhost/"],
)
def test_rmq_url_with_a_non_amqp_scheme_is_rejected_naming_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match="RMQ_URL"):
        Settings.from_env({"RMQ_URL": url})


@pytest.mark.parametrize("url", ["amqp://h/", "amqps://u:p@h:5671/vhost"])
def test_rmq_url_with_an_amqp_scheme_is_accepted(url: str) -> None:
    assert Settings.from_env({"RMQ_URL": url}).rmq_url == url


CLUSTER_URL = (
    "amqp://student:qwerty@node-1:5672/; amqp://student:qwerty@node-2:5672/;"
    "amqp://student:qwerty@node-3:5672/"
)


def test_rmq_url_may_list_the_nodes_of_a_cluster() -> None:
    settings = Settings.from_env({"RMQ_URL": CLUSTER_URL})

    assert settings.rmq_urls == (
        "amqp://student:qwerty@node-1:5672/",
        "amqp://student:qwerty@node-2:5672/",
        "amqp://student:qwerty@node-3:5672/",
    )
    assert (settings.rmq_user, settings.rmq_password, settings.rmq_vhost) == (
        "student", "qwerty", "/"
    )
    assert "qwerty" not in settings.rmq_url_masked
    assert settings.rmq_url_masked.count("***") == 3


def test_one_rmq_url_is_a_list_of_one() -> None:
    assert Settings().rmq_urls == (DEFAULT_RMQ_URL,)


@pytest.mark.parametrize(
    "url",
    [
        "amqp://student:qwerty@node-1/;http://node-2/",  # every URL is checked
        "amqp://student:qwerty@node-1/;amqp://student:qwerty@node-2:x/",
        "amqp://student:qwerty@node-1/;amqp://teacher:qwerty@node-2/",  # another user
        "amqp://student:qwerty@node-1/;amqp://student:other@node-2/",  # another password
        "amqp://student:qwerty@node-1/;amqp://student:qwerty@node-2/course",  # another vhost
        ";",
        " ; ",
    ],
)
def test_bad_lists_of_rmq_urls_are_rejected_naming_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match="RMQ_URL"):
        Settings.from_env({"RMQ_URL": url})


def test_management_url_may_list_the_nodes_of_a_cluster() -> None:
    settings = Settings.from_env(
        {"RMQ_MANAGEMENT_URL": "http://node-1:15672/;http://node-2:15672/"}
    )
    assert settings.rmq_management_urls == ("http://node-1:15672/", "http://node-2:15672/")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RMQ_MANAGEMENT_URL", "http://node-1:15672/;amqp://node-2:15672/"),
        ("RMQ_MANAGEMENT_URL", ";"),
        ("API_URL", "http://a/update_task_status_api/;http://b/update_task_status_api/"),
        ("RMQ_QUEUE_TYPE", "stream"),
        ("RMQ_QUEUE_TYPE", "Quorum"),
    ],
)
def test_bad_cluster_settings_are_rejected_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_rmq_url_with_a_port_that_is_not_a_number_is_rejected_naming_the_variable() -> None:
    # Accepting it only defers the failure: rmq_url_masked (logged when the API connects) raises.
    with pytest.raises(SettingsError, match="RMQ_URL"):
        Settings.from_env({"RMQ_URL": "amqp://student:qwerty@localhost:abc/"})


@pytest.mark.parametrize("raw", ["Memory", "redis", "http://redis:6379/0", "localhost:6379"])
def test_a_task_store_neither_memory_nor_a_redis_url_is_rejected(raw: str) -> None:
    with pytest.raises(SettingsError, match="TASK_STORE"):
        Settings.from_env({"TASK_STORE": raw})


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("API_URL", "localhost:8080/update_task_status_api/"),
        ("RMQ_MANAGEMENT_URL", "amqp://localhost:15672/"),
    ],
)
def test_http_urls_with_another_scheme_are_rejected_naming_the_variable(
    variable: str, url: str
) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: url})


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("teacher.local", {"teacher.local"}),
        (" 192.168.1.10 , Teacher-PC ", {"192.168.1.10", "teacher-pc"}),
        ("[fe80::1],localhost", {"fe80::1", "localhost"}),
    ],
)
def test_allowed_hosts_are_read_as_an_origin_names_them(raw: str, names: set[str]) -> None:
    assert Settings.from_env({"ALLOWED_HOSTS": raw}).allowed_host_names == names


@pytest.mark.parametrize(
    "raw", ["localhost:8080", "http://192.168.1.10", "a,,b", "localhost,", "::1", "*", "a b", "x/"]
)
def test_bad_allowed_hosts_are_rejected_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="ALLOWED_HOSTS"):
        Settings.from_env({"ALLOWED_HOSTS": raw})


def test_trusted_proxies_are_networks_and_names() -> None:
    settings = Settings.from_env({"TRUSTED_PROXIES": " 10.0.0.0/8, 127.0.0.1 ,::1,Proxy,lb.lan"})
    assert settings.trusted_proxy_parts == (
        (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"), ip_network("::1/128")),
        ("proxy", "lb.lan"),
    )


@pytest.mark.parametrize("raw", ["*", "300.1.1.1", "10.0.0.1/8", "[::1]", "proxy,", "a b", "x:80"])
def test_bad_trusted_proxies_are_rejected_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        Settings.from_env({"TRUSTED_PROXIES": raw})


def test_unknown_log_level_is_rejected_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="LOG_LEVEL"):
        Settings.from_env({"LOG_LEVEL": "LOUD"})


def test_unknown_log_format_is_rejected_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})


def test_credentials_come_from_the_url() -> None:
    settings = Settings(rmq_url="amqp://alice:s3cret@h:5672/")

    assert settings.rmq_user == "alice"
    assert settings.rmq_password == "s3cret"


def test_percent_encoded_credentials_are_decoded() -> None:
    settings = Settings(rmq_url="amqp://al%40ice:p%40ss%3Aword%2F@h:5672/")

    assert settings.rmq_user == "al@ice"
    assert settings.rmq_password == "p@ss:word/"


def test_missing_credentials_are_rabbitmqs_guest() -> None:
    settings = Settings(rmq_url="amqp://h:5672/")

    assert settings.rmq_user == "guest"
    assert settings.rmq_password == "guest"


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://h:5672/", "/"),
        ("amqp://h:5672", "/"),
        ("amqp://h:5672/test", "test"),
        ("amqp://h:5672/%2F", "/"),
        ("amqp://h:5672/my%20vhost", "my vhost"),
    ],
)
def test_rmq_vhost_as_amqp_clients_read_it(url: str, vhost: str) -> None:
    assert Settings(rmq_url=url).rmq_vhost == vhost


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://student:qwerty@localhost:5672/", "amqp://student:***@localhost:5672/"),
        ("amqps://u:p@h/%2F?heartbeat=30", "amqps://u:***@h/%2F?heartbeat=30"),
        ("amqp://u:p%40ss%3Aw@h:5672/v", "amqp://u:***@h:5672/v"),
        ("amqp://:secret@h/", "amqp://:***@h/"),
        ("amqp://al%40ice:pw@h/", "amqp://al%40ice:***@h/"),
    ],
)
def test_mask_password_hides_the_password(url: str, masked: str) -> None:
    assert mask_password(url) == masked


@pytest.mark.parametrize("password", ["qwerty", "p%40ss", "p%3Ass%2Fword", "%E2%82%AC-euro"])
def test_mask_password_leaves_no_trace_of_the_password(password: str) -> None:
    masked = mask_password(f"amqp://user:{password}@host:5672/")

    assert password not in masked
    assert unquote(password) not in masked
    assert "***" in masked


def test_mask_password_keeps_an_ipv6_host_a_valid_url() -> None:
    assert mask_password("amqp://u:secret@[::1]:5672/") == "amqp://u:***@[::1]:5672/"


@pytest.mark.parametrize(
    "url", ["amqp://localhost:5672/", "amqp://user@localhost/", "amqp://h", "http://example/x?y=1"]
)
def test_mask_password_leaves_a_url_without_password_unchanged(url: str) -> None:
    assert mask_password(url) == url


def test_rmq_url_masked_hides_the_settings_password() -> None:
    settings = Settings(rmq_url="amqp://alice:s3cret@h:5672/")

    assert settings.rmq_url_masked == "amqp://alice:***@h:5672/"


def test_callback_token_is_not_in_repr() -> None:
    settings = Settings.from_env({"CALLBACK_TOKEN": "very-secret-token-1234"})

    assert settings.callback_token == "very-secret-token-1234"
    assert "very-secret-token-1234" not in repr(settings)
    assert "very-secret-token-1234" not in str(settings)


def test_api_token_is_not_in_repr() -> None:
    settings = Settings.from_env({"API_TOKEN": "very-secret-api-token-5678"})

    assert settings.api_token == "very-secret-api-token-5678"
    assert "very-secret-api-token-5678" not in repr(settings)


@pytest.mark.parametrize(
    ("raw", "parts"),
    [
        ("30/minute", (30, "minute")),
        ("5/second", (5, "second")),
        ("1/hour", (1, "hour")),
        ("1000/day", (1000, "day")),
        (" 10 / second ", (10, "second")),
        ("100000/second", (100_000, "second")),
    ],
)
def test_rate_limit_is_read_as_requests_per_period(raw: str, parts: tuple[int, str]) -> None:
    assert Settings.from_env({"RATE_LIMIT": raw}).rate_limit_parts == parts


@pytest.mark.parametrize(
    "raw",
    ["30", "minute", "30/min", "30/minutes", "30/Minute", "30 per minute", "0/second",
     "-1/second", "1.5/second", "100001/second", "30/minute;100/hour", "/second", "3O/second",
     "٣/second"],
)
def test_bad_rate_limit_is_rejected_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="RATE_LIMIT"):
        Settings.from_env({"RATE_LIMIT": raw})


def test_settings_are_frozen() -> None:
    settings = Settings()

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.api_port = 1  # type: ignore[misc]


# ------------------------------------------------------------------------------ SECURE=1

SECURE_ENV = {
    "SECURE": "1",
    "RMQ_URL": "amqps://demo:a-generated-password@localhost:5671/",
    "RMQ_MANAGEMENT_URL": "https://localhost:15671/",
    "API_TOKEN": "a" * 32,
    "CALLBACK_TOKEN": "c" * 32,
    "RATE_LIMIT": "60/minute",
}


def test_secure_mode_starts_with_the_whole_checklist() -> None:
    settings = Settings.from_env(SECURE_ENV)

    assert settings.secure


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"RMQ_URL": "amqp://demo:a-generated-password@localhost:5672/"}, "RMQ_URL must be amqps"),
        ({"RMQ_MANAGEMENT_URL": "http://localhost:15672/"}, "RMQ_MANAGEMENT_URL must be https"),
        ({"RMQ_URL": "amqps://student:qwerty@localhost:5671/"}, "student/qwerty"),
        ({"API_TOKEN": ""}, "API_TOKEN must be set"),
        ({"CALLBACK_TOKEN": "short"}, "CALLBACK_TOKEN must be set, at least 16"),
        ({"RATE_LIMIT": ""}, "RATE_LIMIT must be set"),
    ],
)
def test_secure_mode_refuses_to_start_without_an_item_and_names_it(
    changes: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match="SECURE=1 needs the whole checklist") as refused:
        Settings.from_env({**SECURE_ENV, **changes})

    assert named in str(refused.value)
    assert "a-generated-password" not in str(refused.value)


def test_each_item_works_without_the_switch() -> None:
    settings = Settings.from_env({**SECURE_ENV, "SECURE": "0", "API_TOKEN": ""})

    assert not settings.secure and settings.api_token == ""


@pytest.mark.parametrize("value", ["2", "maybe", "enabled"])
def test_secure_must_be_a_yes_or_a_no(value: str) -> None:
    with pytest.raises(SettingsError, match=f"SECURE must be 1 or 0, got '{value}'"):
        Settings.from_env({"SECURE": value})


@pytest.mark.parametrize(("content", "why"), [
    (None, "No such file"), ("not a certificate\n", "NO_CERTIFICATE_OR_CRL_FOUND"),
])
def test_a_ca_file_without_a_certificate_is_named(tmp_path, content, why) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)

    with pytest.raises(SettingsError, match="RMQ_CA_FILE must name a PEM file") as refused:
        Settings.from_env({"RMQ_CA_FILE": str(path)})

    assert why in str(refused.value)
