"""Configuration: the example is valid, every class of error is reported precisely."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vspd.cli import example_config, main
from vspd.config import ConfigError, load_config
from vspd.config.secrets import DAEMON_SCOPES
from vspd.errors import VspdError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vspd.toml"
    path.write_text(text)
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return [str(problem) for problem in caught.value.problems]


def test_example_config_is_complete_and_valid(tmp_path: Path) -> None:
    path = write(tmp_path, example_config())
    config = load_config(path, {})
    assert config.cameras[0].source_spec.kind == "synthetic"
    assert config.kafka.frames_topic == "vspd.frames"
    assert config.alerts.rules[0].name == "motion-anywhere"


def test_cli_example_then_check_config_exits_0(tmp_path: Path) -> None:
    example = subprocess.run(
        [sys.executable, "-m", "vspd", "config", "example"],
        capture_output=True,
        text=True,
        check=True,
    )
    path = write(tmp_path, example.stdout)
    check = subprocess.run(
        [sys.executable, "-m", "vspd", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert "ok" in check.stdout


def test_misspelt_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, '[kafka]\nbootstrap_server = "k:9092"\n')
    assert problems(path) == [
        f"{path}: kafka.bootstrap_server: unknown key 'bootstrap_server'; did you mean 'bootstrap_servers'?"
    ]


def test_check_config_cli_exits_1_and_names_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[[cameras]]\nid = "front"\nsource = "synthetic:"\nfsp = 5\n')
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: cameras[front].fsp: unknown key 'fsp'; did you mean 'fps'?" in err


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[brokr]\nmax_in_flight = 3\n")
    assert problems(path) == [f"{path}: brokr: unknown key 'brokr'; did you mean 'broker'?"]


def test_wrong_type_says_what_was_given(tmp_path: Path) -> None:
    path = write(tmp_path, '[broker]\nmax_in_flight = "lots"\n')
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: broker.max_in_flight: Input should be a valid integer")
    assert "'lots'" in problem


def test_out_of_range_value(tmp_path: Path) -> None:
    path = write(tmp_path, '[[cameras]]\nid = "a"\nsource = "synthetic:"\njpeg_quality = 101\n')
    (problem,) = problems(path)
    assert problem.startswith(
        f"{path}: cameras[a].jpeg_quality: Input should be less than or equal to 100"
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("synthetc:", "has no known scheme"),
        ("v4l2:video0", "v4l2 needs a device"),
        ("picamera2:front", "picamera2 needs a camera number"),
        ("file:", "file needs a path"),
        ("synthetic:?objects=3&colour=red", "unknown option 'colour' for a synthetic source"),
        ("synthetic:?objects=many", "option 'objects' must be int"),
        ("file:/clip.mp4?loop=perhaps", "option 'loop' must be true or false"),
        ("rtsp://", "has no host"),
    ],
)
def test_bad_source_uri(tmp_path: Path, source: str, reason: str) -> None:
    path = write(tmp_path, f'[[cameras]]\nid = "cam"\nsource = "{source}"\n')
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: cameras[cam].source: ")
    assert reason in problem


def test_good_source_uris_parse(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\n".join(
            f'[[cameras]]\nid = "c{index}"\nsource = "{source}"'
            for index, source in enumerate(
                [
                    "picamera2:0",
                    "v4l2:/dev/video0",
                    "rtsp://user@cam.local:554/stream",
                    "http://cam.local/mjpeg",
                    "file:/srv/clip.mp4?loop=true",
                    "synthetic:?objects=2&speed=0.5&size=0.2&seed=7",
                ]
            )
        ),
    )
    config = load_config(path, {})
    kinds = [camera.source_spec.kind for camera in config.cameras]
    assert kinds == ["picamera2", "v4l2", "rtsp", "http", "file", "synthetic"]
    assert config.cameras[4].source_spec.option("loop", False) is True
    assert config.cameras[5].source_spec.options == {
        "objects": 2,
        "speed": 0.5,
        "size": 0.2,
        "seed": 7,
    }


def test_duplicate_camera_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[cameras]]\nid = "a"\nsource = "synthetic:"\n[[cameras]]\nid = "a"\nsource = "synthetic:"\n',
    )
    (problem,) = problems(path)
    assert "camera 'a' is defined twice" in problem


def test_missing_secret_file_names_key_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    path = write(
        tmp_path,
        f'[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_username = "u"\nsasl_password = "file:{missing}"\n',
    )
    (problem,) = problems(path)
    assert problem == f"{path}: kafka.sasl_password: secret file '{missing}' does not exist"


def test_credential_outside_systemd_is_checked_where_the_units_load_it(tmp_path: Path) -> None:
    # No $CREDENTIALS_DIRECTORY (check-config at a shell): /etc/vspd/credentials/<scope>/<name>.
    path = write(
        tmp_path,
        '[[alerts.sinks]]\ntype = "webhook"\nname = "ops"\nurl = "http://h/x"\nsecret = "credential:hook"\n',
    )
    root = tmp_path / "etc-vspd-credentials"
    with pytest.raises(ConfigError) as caught:
        load_config(path, {}, credentials_root=root)
    (problem,) = [str(p) for p in caught.value.problems]
    assert problem == (
        f"{path}: alerts.sinks[ops].secret: refers to credential 'hook', which is not in "
        f"'{root}/alerts' (where the packaged units load it from; "
        "$CREDENTIALS_DIRECTORY is not set)"
    )
    (root / "alerts").mkdir(parents=True)
    (root / "alerts" / "hook").write_text("hmac-key\n")
    config = load_config(path, {}, credentials_root=root)
    secret = config.alerts.sinks[0].secret  # type: ignore[union-attr]
    assert secret is not None
    assert secret.get_secret_value() == "hmac-key"


def test_secrets_come_from_credentials_directory_and_are_not_printed(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "kafka-password").write_text("s3cret\n")
    path = write(
        tmp_path,
        '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\n'
        'sasl_username = "vspd"\nsasl_password = "credential:kafka-password"\n',
    )
    config = load_config(path, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.kafka.sasl_password is not None
    assert config.kafka.sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)
    assert "s3cret" not in str(config.model_dump())


def test_credentials_loaded_by_the_packaged_units_keep_their_file_name(tmp_path: Path) -> None:
    # LoadCredential=vspd:/etc/vspd/credentials names the file kafka-password "vspd_kafka-password".
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "vspd_kafka-password").write_text("from-systemd")
    path = write(
        tmp_path,
        '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_username = "vspd"\n'
        'sasl_password = "credential:kafka-password"\n',
    )
    config = load_config(path, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.kafka.sasl_password is not None
    assert config.kafka.sasl_password.get_secret_value() == "from-systemd"


def test_environment_overrides_scalars_lists_and_nested_tables(tmp_path: Path) -> None:
    path = write(tmp_path, '[kafka]\nbootstrap_servers = "file:9092"\n')
    config = load_config(
        path,
        {
            "VSPD_KAFKA__BOOTSTRAP_SERVERS": "env1:9092,env2:9092",
            "VSPD_KAFKA__FRAMES_TOPIC": "42",
            "VSPD_BROKER__MAX_IN_FLIGHT": "48",
            "VSPD_BROKER__INCLUDE_IMAGE": "false",
            "VSPD_BROKER__PROCESSOR_ADDRESSES": '["p1:50051", "p2:50051"]',
            "VSPD_PROCESSOR__MOTION__MIN_AREA": "0.01",
            "UNRELATED": "x",
        },
    )
    assert config.kafka.bootstrap_servers == "env1:9092,env2:9092"
    assert config.kafka.frames_topic == "42"
    assert config.broker.max_in_flight == 48
    assert config.broker.include_image is False
    assert config.broker.processor_addresses == ["p1:50051", "p2:50051"]
    assert config.processor.motion.min_area == 0.01


def test_bad_environment_override_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert problems(path, {"VSPD_BROKER__MAX_IN_FLIGHT": "many", "VSPD_KAFKA__TYPO": "x"}) == [
        "environment VSPD_KAFKA__TYPO: kafka.typo: unknown key 'typo'",
        "environment VSPD_BROKER__MAX_IN_FLIGHT: broker.max_in_flight: "
        "Input should be a valid integer, unable to parse string as an integer (got 'many')",
    ]


def test_invalid_toml_names_file_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, "[kafka\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: not valid TOML:")
    assert "line 1" in problem


def test_explicit_missing_file(tmp_path: Path) -> None:
    assert problems(tmp_path / "absent.toml") == [
        f"{tmp_path / 'absent.toml'}: file does not exist"
    ]


def test_rule_errors_name_the_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[alerts.rules]]\nname = "porch"\nmessage = "{{ label"\n'
        "zones = [[[0.0, 0.0], [2.0, 0.0], [1.0, 1.0]]]\n"
        'quiet_hours = ["25:00-06:00"]\n',
    )
    found = problems(path)
    assert any(
        p.startswith(f"{path}: alerts.rules[porch].message: message template:") for p in found
    )
    assert f"{path}: alerts.rules[porch].zones: zone 0 point (2.0, 0.0) is outside 0..1" in found
    assert f"{path}: alerts.rules[porch].quiet_hours: '25:00' is not HH:MM" in found


@pytest.mark.parametrize("daemon", ["broker", "capture", "processor", "alerts"])
def test_only_the_alerts_daemon_compiles_message_templates(tmp_path: Path, daemon: str) -> None:
    # Jinja costs every daemon that imports it megabytes; only alerts renders messages.
    path = write(tmp_path, '[[alerts.rules]]\nname = "porch"\nmessage = "{{ label"\n')
    code = (
        "import sys; from pathlib import Path;"
        "from vspd.config import ConfigError, load_config;"
        "from vspd.config.secrets import DAEMON_SCOPES\n"
        f"import vspd.{daemon}.daemon\n"
        "try:\n"
        f"    load_config(Path(sys.argv[1]), secret_scopes=DAEMON_SCOPES[{daemon!r}])\n"
        "    refused = False\n"
        "except ConfigError:\n"
        "    refused = True\n"
        "print(refused, 'jinja2' in sys.modules)"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    expected = "True True" if daemon == "alerts" else "False False"
    assert ran.stdout.strip() == expected


def test_rule_naming_unknown_sink(tmp_path: Path) -> None:
    path = write(tmp_path, '[[alerts.rules]]\nname = "porch"\nsinks = ["pager"]\n')
    (problem,) = problems(path)
    assert "rule 'porch' names sink 'pager', which is not configured" in problem


def test_the_default_file_missing_is_an_error_not_silent_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = tmp_path / "etc" / "vspd.toml"
    monkeypatch.setattr("vspd.config.loader.DEFAULT_CONFIG_PATH", absent)
    with pytest.raises(ConfigError) as caught:
        load_config(None, {})
    assert [str(p) for p in caught.value.problems] == [f"{absent}: file does not exist"]


def test_reference_problems_come_with_the_field_problems(tmp_path: Path) -> None:
    # pydantic skips model validators when a field is invalid: references are checked apart.
    path = write(
        tmp_path,
        "[kafka]\npartitions = 0\n"
        '[[cameras]]\nid = "a"\nsource = "synthetic:"\n'
        '[[cameras]]\nid = "a"\nsource = "synthetic:"\n'
        '[[alerts.rules]]\nname = "porch"\ncameras = ["gate"]\nsinks = ["pager"]\n',
    )
    assert problems(path) == [
        f"{path}: kafka.partitions: Input should be greater than or equal to 1 (got 0)",
        f"{path}: cameras[1].id: camera 'a' is defined twice",
        f"{path}: alerts.rules[porch].sinks: rule 'porch' names sink 'pager', "
        "which is not configured",
        f"{path}: alerts.rules[porch].cameras: rule 'porch' names camera 'gate', "
        "which is not in [[cameras]] (configured: a)",
    ]


@pytest.mark.parametrize(
    "arguments",
    [
        ["--config", "{path}", "check-config"],
        ["check-config", "--config", "{path}"],
        ["check-config", "{path}"],
        ["--log-level", "error", "topics", "create", "--config", "{path}"],
        ["topics", "create", "--config", "{path}", "--log-level", "error"],
    ],
)
def test_config_option_works_before_or_after_the_subcommand(
    tmp_path: Path, arguments: list[str]
) -> None:
    path = write(tmp_path, "[kafka]\npartitions = 0\n")
    run = subprocess.run(
        [sys.executable, "-m", "vspd", *(a.format(path=path) for a in arguments)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert f"{path}: kafka.partitions: Input should be greater" in run.stderr
    assert "Traceback" not in run.stderr


def test_every_subcommand_and_option_has_a_description() -> None:
    from vspd.cli import build_parser

    def walk(parser: argparse.ArgumentParser, name: str) -> list[str]:
        missing = [
            f"{name} {action.option_strings or action.dest}"
            for action in parser._actions
            if not action.help and not isinstance(action, argparse._SubParsersAction)
        ]
        if not parser.description:
            missing.append(f"{name}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    missing += walk(sub, f"{name} {sub_name}")
        return missing

    assert walk(build_parser(), "vspd") == []


def test_user_mistake_on_command_line_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "[kafka]\npartitions = 0\n")
    run = subprocess.run(
        [sys.executable, "-m", "vspd", "--config", str(path), "topics", "create"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert (
        run.stderr.strip()
        == f"{path}: kafka.partitions: Input should be greater than or equal to 1 (got 0)"
    )


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """The real `vspd check-config`, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "vspd", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


HOSTILE_CONFIGS = {
    "not UTF-8": (b"\xff\xfe[kafka]\n", "is not UTF-8"),
    "nested too deeply": (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    "huge integer": (b"[kafka]\npartitions = 99999999999999999999999999\n", "kafka.partitions"),
    "infinite seconds": (b"[processor]\ngrace_period_s = inf\n", "finite"),
    "empty topic": (b'[kafka]\nframes_topic = ""\n', "kafka.frames_topic"),
    "topic with a slash": (b'[kafka]\nresults_topic = "a/b"\n', "kafka.results_topic"),
    "url without host": (
        b'[[alerts.sinks]]\ntype = "webhook"\nname = "w"\nurl = "http://"\n',
        "URL has no host",
    ),
    "CR/LF in a url": (
        b'[[alerts.sinks]]\ntype = "ntfy"\nname = "n"\nurl = "https://x/\\r\\nX: y"\n',
        "control characters",
    ),
    "credential escaping its directory": (
        b'[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_username = "u"\n'
        b'sasl_password = "credential:../etc/shadow"\n',
        "credential name",
    ),
    "empty MQTT host": (
        b'[[alerts.sinks]]\ntype = "mqtt"\nname = "m"\nhost = ""\n',
        "alerts.sinks[m].host",
    ),
    "unknown librdkafka option": (
        b'[kafka.librdkafka]\n"bogus.option" = 1\n',
        "librdkafka refuses it",
    ),
    "librdkafka option vspd's idempotent producers cannot take": (
        b'[kafka.librdkafka]\n"max.in.flight.requests.per.connection" = 10\n',
        "max.in.flight",
    ),
    "unknown Jinja filter": (
        b'[[alerts.rules]]\nname = "r"\nmessage = "{{ x|nosuchfilter }}"\n',
        "No filter named",
    ),
    "missing TLS file": (
        b'[processor]\ntls_cert_file = "/nonexistent.pem"\ntls_key_file = "/nonexistent.key"\n',
        "does not exist",
    ),
    "port overflow": (b'[broker]\nprocessor_addresses = ["a:99999"]\n', "is not host:port"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CONFIGS))
def test_check_config_names_every_hostile_input_in_one_line(case: str, tmp_path: Path) -> None:
    content, reason = HOSTILE_CONFIGS[case]
    path = tmp_path / "vspd.toml"
    path.write_bytes(content)
    done = check_config(path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    assert reason in output, output
    assert all(line.startswith(str(path)) for line in output.splitlines() if line), output


def test_check_config_does_not_hang_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "vspd.toml"
    os.mkfifo(fifo)
    done = check_config(fifo)
    assert done.returncode == 1
    assert "is not a regular file" in done.stderr + done.stdout


def test_check_config_never_shows_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "vspd.toml"
    path.write_text(
        '[[cameras]]\nid = "door"\nsource = "http://admin:hunter2@cam.example:99999/video"\n'
        '[[alerts.sinks]]\ntype = "webhook"\nname = "w"\nurl = 42\n'
        '[[alerts.sinks]]\ntype = "ntfy"\nname = "n"\nurl = "ftp://ntfy.example/topic-s3cret"\n'
    )
    done = check_config(path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "hunter2" not in output
    assert "s3cret" not in output


def test_a_webhook_url_with_its_token_can_live_in_a_credential(tmp_path: Path) -> None:
    (tmp_path / "hook-url").write_text("https://hooks.example/services/T0/B0/s3cret\n")
    path = tmp_path / "vspd.toml"
    path.write_text('[[alerts.sinks]]\ntype = "webhook"\nname = "w"\nurl = "credential:hook-url"\n')
    config = load_config(path, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.alerts.sinks[0].url == "https://hooks.example/services/T0/B0/s3cret"  # type: ignore[union-attr]


def _config_with_every_scope(tmp_path: Path) -> Path:
    path = tmp_path / "vspd.toml"
    path.write_text(
        '[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_username = "vspd"\n'
        'sasl_password = "credential:kafka-password"\n'
        '[[cameras]]\nid = "gate"\nsource = "http://cam.lan/video"\nusername = "viewer"\n'
        'password = "credential:gate-password"\n'
        '[[alerts.sinks]]\ntype = "webhook"\nname = "ops"\nurl = "credential:hook-url"\n'
        'secret = "file:/nonexistent/hook-secret"\n'
    )
    return path


def test_a_daemon_reads_only_its_own_secrets(tmp_path: Path) -> None:
    # As systemd hands them to the broker's unit: its scope (kafka) only.
    credentials = tmp_path / "broker-credentials"
    credentials.mkdir()
    (credentials / "kafka_kafka-password").write_text("k-secret\n")
    path = _config_with_every_scope(tmp_path)
    environ = {"CREDENTIALS_DIRECTORY": str(credentials)}
    config = load_config(path, environ, secret_scopes=DAEMON_SCOPES["broker"])
    assert config.kafka.sasl_password is not None
    assert config.kafka.sasl_password.get_secret_value() == "k-secret"
    # The camera's and the sink's secrets were not read (they are not there at all) and refuse
    # to be: nothing in the broker can use them.
    for unloaded in (config.cameras[0].password, config.alerts.sinks[0].secret):
        assert unloaded is not None
        with pytest.raises(VspdError, match="another daemon's scope"):
            unloaded.get_secret_value()
    processor = load_config(path, {}, secret_scopes=DAEMON_SCOPES["processor"])
    assert processor.kafka.sasl_username == "vspd"


def test_check_config_reads_every_scope_from_the_credentials_tree(tmp_path: Path) -> None:
    # CREDENTIALS_DIRECTORY=/etc/vspd/credentials, as the Ansible role validates with.
    tree = tmp_path / "credentials"
    for scope, name, value in (
        ("kafka", "kafka-password", "k"),
        ("cameras", "gate-password", "c"),
        ("alerts", "hook-url", "https://hooks.example/t0ken"),
    ):
        (tree / scope).mkdir(parents=True)
        (tree / scope / name).write_text(value)
    path = _config_with_every_scope(tmp_path)
    with pytest.raises(ConfigError) as raised:
        load_config(path, {"CREDENTIALS_DIRECTORY": str(tree)})
    # Every secret was read: only the missing file: secret is a problem, named by its key.
    assert [problem.key for problem in raised.value.problems] == ["alerts.sinks[ops].secret"]
    assert "t0ken" not in str(raised.value)


def test_each_unit_loads_only_its_daemons_secret_scopes() -> None:
    units = Path(__file__).parent.parent / "systemd"
    for daemon in ("broker", "capture", "alerts", "processor"):
        unit = next(units.glob(f"vspd-{daemon}*.service"))
        loaded = {
            line.removeprefix("LoadCredential=").split(":", 1)[0]
            for line in unit.read_text().splitlines()
            if line.startswith("LoadCredential=")
        }
        assert loaded == set(DAEMON_SCOPES[daemon]), unit.name
        for scope in loaded:
            assert f"LoadCredential={scope}:/etc/vspd/credentials/{scope}" in unit.read_text()
