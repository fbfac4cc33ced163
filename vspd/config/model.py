"""The one configuration model of vspd: frozen, validated, unknown keys rejected.

Field names are the TOML keys; outside tools (Ansible, the Debian default,
independent clients) rely on them, so renaming one is a breaking change.
"""

from __future__ import annotations

import re
from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vspd.config.secrets import (
    AlertsSecret,
    CameraSecret,
    KafkaSecret,
    is_unloaded_reference,
    scopes_read,
    url_in,
)
from vspd.config.sources import SourceSpec, parse_source
from vspd.wire import CAMERA_ID_PATTERN, grpc_message_limit

# Validation context key: the directory of the config file (relative paths are relative to it).
CONTEXT_CONFIG_DIR = "config_dir"
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
# Camera ids become Kafka keys, systemd instance names and file names.
_CAMERA_ID = CAMERA_ID_PATTERN


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def _check_host_port(value: str) -> str:
    match = _HOST_PORT.match(value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return value


def _check_http_url(value: str, info: ValidationInfo) -> str:
    """An http(s) URL with a host, no control characters; errors never repeat it."""
    if is_unloaded_reference(value, info, "alerts"):
        return value  # another daemon's secret: checked where it is loaded
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise ValueError("URL has control characters (CR, LF, ...)")
    try:
        parts = urlsplit(value)
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("URL must start with http:// or https://")
    if not host:
        raise ValueError("URL has no host")
    return value


def _check_pair(name: str, cert: str, key: str) -> None:
    if bool(cert) != bool(key):
        stem = name.removesuffix("cert_file")
        raise ValueError(f"{stem}cert_file and {stem}key_file go together")


def _check_readable(path: str) -> None:
    """A file the daemon must read at start: caught by check-config, not by a crash."""
    if not path:
        return
    target = Path(path)
    if not target.exists():
        raise ValueError(f"{path!r} does not exist")
    if not target.is_file():  # a FIFO would block the reader for ever
        raise ValueError(f"{path!r} is not a regular file")
    try:
        with target.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror}") from None


# Finite, and at most a day: "inf" or 1e300 seconds would overflow timers at start.
PositiveSeconds = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)]
# Kafka's own rule for topic names.
TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]
# Webhook and ntfy URLs often carry their secret (a token in the path): they
# take credential:NAME and file:/path like any secret, and are shown redacted.
HttpUrl = Annotated[str, url_in("alerts"), AfterValidator(_check_http_url)]
Host = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\[\]-]{1,253}$")]


class KafkaConfig(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    frames_topic: TopicName = "vspd.frames"
    results_topic: TopicName = "vspd.results"
    dead_letter_topic: TopicName = "vspd.dead-letter"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: KafkaSecret | None = None
    ssl_ca_location: str = ""
    ssl_certificate_location: str = ""
    ssl_key_location: str = ""
    ssl_key_password: KafkaSecret | None = None
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    # Camera frames are large: 8 MiB fits a 4K JPEG with room to spare.
    message_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1_000_000, le=256 * 1024 * 1024)
    partitions: int = Field(default=8, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=100)
    # Topic retention, set by `vspd topics create` (and brought up to date when
    # changed). The frames topic is the video store: clips and replays read it.
    # Bytes are per partition; 0 means no size limit (time alone).
    frames_retention_hours: float = Field(default=24.0, gt=0, le=24 * 3650)
    frames_retention_bytes: int = Field(default=0, ge=0)
    results_retention_hours: float = Field(default=24.0 * 7, gt=0, le=24 * 3650)
    results_retention_bytes: int = Field(default=0, ge=0)
    session_timeout_ms: int = Field(default=45_000, ge=1_000, le=3_600_000)
    # Raw librdkafka settings for what vspd does not model; they win over vspd's.
    librdkafka: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str) -> str:
        for server in value.split(","):
            _check_host_port(server.strip())
        return value

    @field_validator("librdkafka")
    @classmethod
    def _librdkafka(
        cls, value: dict[str, str | int | float | bool]
    ) -> dict[str, str | int | float | bool]:
        """librdkafka itself judges its options (a client is made, nothing is connected;
        consumer-only options draw no warning at log level 0)."""
        if not value:
            return value
        from confluent_kafka import KafkaException, Producer

        try:
            settings = {key: item for key, item in value.items() if key != "bootstrap.servers"}
            # vspd's producers are idempotent: an option must also work with that
            # (max.in.flight above 5, for one, does not).
            Producer({"enable.idempotence": True, **settings, "log_level": 0})
        except (KafkaException, ValueError, TypeError) as exc:
            error = exc.args[0] if exc.args else exc
            reason = error.str() if hasattr(error, "str") else str(error)
            raise ValueError(f"librdkafka refuses it: {reason}") from None
        return value

    @model_validator(mode="after")
    def _sasl(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL") and not self.sasl_username:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username")
        if self.security_protocol.startswith("SASL") and self.sasl_password is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_password")
        return self


class CameraConfig(Section):
    id: str = Field(pattern=_CAMERA_ID)
    source: str
    fps: float = Field(default=10.0, gt=0, le=120)
    width: int = Field(default=640, ge=16, le=7680)
    height: int = Field(default=480, ge=16, le=4320)
    jpeg_quality: int = Field(default=80, ge=1, le=100)
    # Network cameras: the login, kept out of the source URL (and so out of
    # logs); the password takes credential:NAME. user:pass@ in the URL works too.
    username: str = Field(default="", max_length=256, pattern=r"^[^\x00-\x1f:@/]*$")
    password: CameraSecret | None = None
    # picamera2 sources (vspd.capture.sources.picamera): the JPEG encoder, auto =
    # the hardware block on Pi 0-4, simplejpeg on a Pi 5; lores = encode a stream
    # scaled from the sensor's full field of view.
    picamera_encoder: Literal["auto", "mjpeg", "jpeg"] = "auto"
    picamera_lores: bool = False

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        parse_source(value)
        return value

    @cached_property
    def source_spec(self) -> SourceSpec:
        return parse_source(self.source)


class CaptureConfig(Section):
    # Frames between the camera read and the encoder; when full the newest
    # frame is dropped and counted instead of blocking the camera.
    queue_frames: int = Field(default=8, ge=1)
    # ... and at most this many bytes of them (a raw 1080p frame is 6 MB: a Pi's memory);
    # one frame always fits.
    queue_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Encoded frames waiting for Kafka (outage); beyond it the oldest are dropped.
    buffer_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    reconnect_initial_s: PositiveSeconds = 0.5
    reconnect_max_s: PositiveSeconds = 30.0
    # A camera that says it streams but delivers no frame this long has a read
    # that hangs (no source timeout caught it): the daemon stops answering the
    # systemd watchdog (and /healthz), so that systemd restarts it.
    stalled_after_s: PositiveSeconds = 60.0


class BrokerConfig(Section):
    processor_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:50051"], min_length=1
    )
    processor_api: Literal["vspd", "detector"] = "vspd"
    # TLS to the processor (never an insecure fallback once on): the CA that
    # signed its certificate (empty: the system's), and for mutual TLS this
    # broker's own certificate and key.
    processor_tls: bool = False
    processor_ca_file: str = ""
    processor_cert_file: str = ""
    processor_key_file: str = ""
    # Frames in processor calls at once, in total.
    max_in_flight: int = Field(default=32, ge=1, le=10_000)
    # Frames per call at most, to a processor that takes batches (Describe's
    # max_batch; vspd's own does): a call's fixed cost is paid once for them
    # all. Frames that are waiting go together; none waits to fill a batch. 1: never.
    max_batch: int = Field(default=16, ge=1, le=256)
    # Frames consumed but not yet committed, per partition (the ordered window):
    # what a crash can make the broker process again (results already written
    # are not written again). Larger than max_in_flight, so that one busy
    # camera gets every call while finished frames wait for their commit.
    max_in_flight_per_partition: int = Field(default=64, ge=1, le=100_000)
    # Bytes of frames consumed ahead of the windows, all partitions together.
    # A partition pauses at its share and resumes at half of it. Memory of the
    # broker: this, plus librdkafka's prefetch (a quarter of this), plus the
    # windows (max_in_flight_per_partition frames per partition).
    max_buffered_bytes: int = Field(default=128 * 1024 * 1024, ge=1024 * 1024, le=8 * 1024**3)
    # One call in flight per camera, in capture order (stateful processors):
    # "auto" asks the processor (Describe), "on"/"off" force it.
    ordered_calls: Literal["auto", "on", "off"] = "auto"
    group_id: str = "vspd-broker"
    # Kafka static membership (group.instance.id): a restarted broker gets its
    # partitions back without waiting for its old session to time out.
    # "auto": "<host>-<unit>" under systemd, off elsewhere; "": off.
    group_instance_id: str = Field(default="auto", pattern=r"^[A-Za-z0-9_.:-]{0,200}$")
    assignment_strategy: Literal["cooperative-sticky", "range", "roundrobin"] = "cooperative-sticky"
    call_timeout_s: PositiveSeconds = 10.0
    retry_initial_s: PositiveSeconds = 0.2
    retry_max_s: PositiveSeconds = 10.0
    # 0 retries a transient error for ever (the partition waits); N gives up
    # after N retries and dead-letters the frame.
    max_retries: int = Field(default=0, ge=0, le=1_000_000)
    # 0 is off; otherwise frames older than this become `skipped` results.
    max_frame_age_s: float = Field(default=0.0, ge=0)
    include_image: bool = True

    @field_validator("processor_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [_check_host_port(address) for address in value]

    @model_validator(mode="after")
    def _tls(self) -> BrokerConfig:
        _check_pair("processor_cert_file", self.processor_cert_file, self.processor_key_file)
        files = (self.processor_ca_file, self.processor_cert_file, self.processor_key_file)
        if any(files) and not self.processor_tls:
            raise ValueError("processor_ca_file/cert/key are set but processor_tls is false")
        for path in files:
            _check_readable(path)
        return self


class MotionConfig(Section):
    # Smallest moving region reported, as a fraction of the frame's area.
    min_area: float = Field(default=0.002, gt=0, lt=1)
    history: int = Field(default=100, ge=1)
    var_threshold: float = Field(default=25.0, gt=0)
    # Gaussians per pixel in the background model: each costs memory and time per
    # camera (MOG2's default 5 is 7.4 MB per camera at the analysis size; 3 is 4.4).
    # More models backgrounds that move (leaves, water) better.
    mixtures: int = Field(default=3, ge=1, le=8)
    label: str = "motion"


class FacesConfig(Section):
    scale_factor: float = Field(default=1.1, gt=1)
    min_neighbors: int = Field(default=5, ge=0)
    min_size: int = Field(default=24, ge=1)


class DnnConfig(Section):
    model: str = ""
    labels: str = ""
    output: Literal["yolov8", "yolov5", "ssd"] = "yolov8"
    input_width: int = Field(default=640, ge=1)
    input_height: int = Field(default=640, ge=1)
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    swap_rb: bool = True
    confidence: float = Field(default=0.4, ge=0, le=1)
    nms_threshold: float = Field(default=0.45, ge=0, le=1)


class ProcessorConfig(Section):
    listen: str = "127.0.0.1:50051"
    builtin: Literal["motion", "faces", "dnn"] = "motion"
    # "package.module:function" or the name of a `vspd.processors` entry
    # point; when set it is served instead of the built-in.
    plugin: str = ""
    # Directories searched first for the plug-in's package; relative ones are
    # relative to the config file's directory (the packaged config: /etc/vspd/plugins,
    # readable under the hardened unit). check-config imports the plug-in from here.
    plugin_path: list[str] = Field(default_factory=lambda: ["plugins"])
    api: Literal["vspd", "detector"] = "vspd"
    concurrency: Literal["threads", "asyncio"] = "threads"
    workers: int = Field(default=4, ge=1, le=1024)
    # ProcessBatch: the most frames one call may carry (the broker is told by
    # Describe); a batch's frames run concurrently on the workers. 1: no batches.
    max_batch: int = Field(default=16, ge=1, le=256)
    grace_period_s: PositiveSeconds = 10.0
    # 0: derived from kafka.message_max_bytes (the one size setting); a value
    # here may only raise the processor's limit, never lower it below a frame.
    max_message_bytes: int = Field(default=0, ge=0)
    # TLS: this server's certificate and key (PEM). With tls_client_ca_file,
    # only clients with a certificate signed by that CA get in (mutual TLS).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    motion: MotionConfig = Field(default_factory=MotionConfig)
    faces: FacesConfig = Field(default_factory=FacesConfig)
    dnn: DnnConfig = Field(default_factory=DnnConfig)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_host_port(value)

    @field_validator("plugin_path")
    @classmethod
    def _plugin_path(cls, value: list[str], info: ValidationInfo) -> list[str]:
        base = Path((info.context or {}).get(CONTEXT_CONFIG_DIR, "."))
        resolved = []
        for entry in value:
            if not entry or "\x00" in entry:
                raise ValueError("an empty directory name")
            resolved.append(str(base / entry) if not Path(entry).is_absolute() else entry)
        return resolved

    @model_validator(mode="after")
    def _tls(self) -> ProcessorConfig:
        _check_pair("tls_cert_file", self.tls_cert_file, self.tls_key_file)
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        for path in (self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file):
            _check_readable(path)
        return self

    @model_validator(mode="after")
    def _dnn(self) -> ProcessorConfig:
        if not self.plugin and self.builtin == "dnn" and not self.dnn.model:
            raise ValueError("builtin 'dnn' needs dnn.model (path to an ONNX file)")
        return self


def _parse_clock(value: str) -> time:
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{value!r} is not HH:MM") from None


class RuleConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    cameras: list[str] = Field(default_factory=list)  # empty: every camera
    labels: list[str] = Field(default_factory=list)  # empty: every label
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    # Polygons in normalised coordinates; empty: the whole frame.
    zones: list[list[tuple[float, float]]] = Field(default_factory=list)
    anchor: Literal["bottom_center", "center", "top_center"] = "bottom_center"
    min_frames: int = Field(default=1, ge=1)
    window_s: PositiveSeconds = 5.0
    cooldown_s: float = Field(default=60.0, ge=0)
    # An alert whose frame was captured longer ago than this (a backlog after an
    # outage, a new consumer group reading old results) is stored and reported
    # but not sent: a phone should not ring for what happened an hour ago.
    # Measured against the camera's capture clock (keep cameras on NTP); 0: off.
    max_alert_age_s: float = Field(default=300.0, ge=0)
    # "22:00-06:00": no alerts in that span of local time (it may cross midnight).
    quiet_hours: list[str] = Field(default_factory=list)
    severity: Literal["info", "warning", "critical"] = "warning"
    message: str = "{{ label }} on {{ camera }} at {{ clock }} ({{ count }} frame{{ 's' if count != 1 }}, {{ '%.0f' % (confidence * 100) }}%)"
    sinks: list[str] = Field(default_factory=list)  # empty: every sink
    # What makes an alert: "present" (matching detections, per frame, with
    # min_frames/window_s/cooldown_s), or an object's track: "enter" (its anchor
    # enters a zone), "loiter" (stays min_dwell_s), "cross" (crosses `line`),
    # each once per track.
    trigger: Literal["present", "enter", "loiter", "cross"] = "present"
    min_dwell_s: PositiveSeconds = 30.0
    # Two points; "left"/"right": the side of the line, walking from its first
    # point to its second, that the object crosses to.
    line: list[tuple[float, float]] = Field(default_factory=list)
    direction: Literal["both", "left", "right"] = "both"

    @model_validator(mode="after")
    def _trigger(self) -> RuleConfig:
        if self.trigger == "cross":
            if len(self.line) != 2:
                raise ValueError('trigger = "cross" needs a line of two points')
            for x, y in self.line:
                if not (0 <= x <= 1 and 0 <= y <= 1):
                    raise ValueError(f"line point ({x}, {y}) is outside 0..1")
            if self.line[0] == self.line[1]:
                raise ValueError("the line's two points are the same")
        elif self.line:
            raise ValueError(f'line is only for trigger = "cross" (trigger is {self.trigger!r})')
        return self

    @field_validator("zones")
    @classmethod
    def _zones(cls, zones: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        for index, zone in enumerate(zones):
            if len(zone) < 3:
                raise ValueError(f"zone {index} needs at least 3 points, has {len(zone)}")
            for x, y in zone:
                if not (0 <= x <= 1 and 0 <= y <= 1):
                    raise ValueError(f"zone {index} point ({x}, {y}) is outside 0..1")
        return zones

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, spans: list[str]) -> list[str]:
        for span in spans:
            start, sep, end = span.partition("-")
            if not sep:
                raise ValueError(f"quiet hours {span!r} must be HH:MM-HH:MM")
            _parse_clock(start)
            _parse_clock(end)
        return spans

    @field_validator("message")
    @classmethod
    def _template(cls, value: str, info: ValidationInfo) -> str:
        if "alerts" not in scopes_read(info):
            # Only the alerts daemon renders messages (and check-config, which reads every
            # scope, judges them): the other daemons need not import Jinja for it.
            return value
        from jinja2 import TemplateError, TemplateSyntaxError
        from jinja2.sandbox import SandboxedEnvironment

        try:
            # Compiling (not only parsing) also finds unknown filters and tests.
            SandboxedEnvironment(autoescape=False).from_string(value)
        except TemplateSyntaxError as exc:
            raise ValueError(f"message template: {exc.message} (line {exc.lineno})") from None
        except TemplateError as exc:
            raise ValueError(f"message template: {exc.message}") from None
        return value

    def quiet_spans(self) -> list[tuple[time, time]]:
        spans = []
        for span in self.quiet_hours:
            start, _, end = span.partition("-")
            spans.append((_parse_clock(start), _parse_clock(end)))
        return spans


class SinkBase(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    max_attempts: int = Field(default=0, ge=0)  # 0: keep trying (bounded by retry_max_s spacing)
    timeout_s: PositiveSeconds = 10.0


class WebhookSink(SinkBase):
    type: Literal["webhook"]
    url: HttpUrl
    secret: AlertsSecret | None = None
    signature_header: str = "X-Vspd-Signature"


# An MQTT topic prefix: no wildcards, no empty levels.
_TOPIC_PATH = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"


class MqttSink(SinkBase):
    type: Literal["mqtt"]
    host: Host
    port: int = Field(default=1883, ge=1, le=65535)
    tls: bool = False
    ca_file: str = ""
    username: str = ""
    password: AlertsSecret | None = None
    topic_prefix: str = Field(default="vspd", pattern=_TOPIC_PATH)
    retain: bool = False
    # Home Assistant MQTT discovery: a device per camera (vspd.alerts.home_assistant).
    discovery: bool = False
    discovery_prefix: str = Field(default="homeassistant", pattern=_TOPIC_PATH)
    discovery_off_after_s: PositiveSeconds = 30.0


class EmailSink(SinkBase):
    type: Literal["email"]
    host: Host
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str = ""
    password: AlertsSecret | None = None
    ca_file: str = ""  # trust this CA for STARTTLS (a private mail relay)
    sender: str
    recipients: list[str] = Field(min_length=1)


class NtfySink(SinkBase):
    type: Literal["ntfy"]
    url: HttpUrl
    token: AlertsSecret | None = None


class AppriseSink(SinkBase):
    type: Literal["apprise"]
    urls: list[AlertsSecret] = Field(min_length=1)


class LogSink(SinkBase):
    type: Literal["log"]


SinkConfig = Annotated[
    WebhookSink | MqttSink | EmailSink | NtfySink | AppriseSink | LogSink,
    Field(discriminator="type"),
]


ReportPeriod = Literal["hourly", "daily"]
REPORT_PERIODS: tuple[ReportPeriod, ...] = ("hourly", "daily")


class AlertsConfig(Section):
    group_id: str = "vspd-alerts"
    state_dir: str = "/var/lib/vspd"
    reports_dir: str = "/var/lib/vspd/reports"
    # Prefix of snapshot links in messages, e.g. https://nvr.example/snapshots/
    snapshot_base_url: str = ""
    report_periods: list[ReportPeriod] = Field(default_factory=lambda: list(REPORT_PERIODS))
    retry_initial_s: PositiveSeconds = 1.0
    retry_max_s: PositiveSeconds = 300.0
    # Undelivered deliveries kept per sink; beyond it the oldest are given up
    # (counted and logged), so a dead sink cannot fill the disk.
    max_pending_per_sink: int = Field(default=10_000, ge=1)
    # Event clips, read back from the frames topic (vspd.alerts.clips).
    clips: bool = True
    clip_before_s: float = Field(default=5.0, ge=0, le=60, allow_inf_nan=False)
    clip_after_s: float = Field(default=10.0, ge=0, le=120, allow_inf_nan=False)
    clips_max_bytes: int = Field(default=2 * 1024**3, ge=1)
    clip_base_url: str = ""
    rules: list[RuleConfig] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(default_factory=list)

    # Names that refer to other names are checked in vspd.config.references.


class WebConfig(Section):
    """The live page served by the alerts daemon (vspd.alerts.web)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8095, ge=0, le=65535)
    token: AlertsSecret | None = None
    stale_after_s: PositiveSeconds = 10.0
    health_interval_s: PositiveSeconds = 15.0


class TrackingConfig(Section):
    """Object tracks per camera, made by the broker in capture order (vspd.tracking)."""

    enabled: bool = True
    high_confidence: float = Field(default=0.5, ge=0, le=1)
    low_confidence: float = Field(default=0.1, ge=0, le=1)
    match_iou: float = Field(default=0.2, gt=0, le=1)
    lost_track_s: PositiveSeconds = 2.0

    @model_validator(mode="after")
    def _thresholds(self) -> TrackingConfig:
        if self.low_confidence > self.high_confidence:
            raise ValueError("low_confidence must not be above high_confidence")
        return self


class MetricsConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    broker_port: int = Field(default=9401, ge=0, le=65535)
    processor_port: int = Field(default=9402, ge=0, le=65535)
    alerts_port: int = Field(default=9403, ge=0, le=65535)
    # Camera N of [[cameras]] (counting from 0) serves on capture_port + N.
    capture_port: int = Field(default=9410, ge=0, le=65535)


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: JSON lines when stdout is not a terminal (journald), console otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class VspdConfig(Section):
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    cameras: list[CameraConfig] = Field(default_factory=list)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    processor: ProcessorConfig = Field(default_factory=ProcessorConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _sizes(self) -> VspdConfig:
        limit = self.processor.max_message_bytes
        if limit and limit < self.kafka.message_max_bytes:
            raise ValueError(
                f"processor.max_message_bytes = {limit} is below kafka.message_max_bytes = "
                f"{self.kafka.message_max_bytes}: frames that Kafka accepts could never reach "
                "the processor (leave it 0 to derive it)"
            )
        return self

    @property
    def processor_message_bytes(self) -> int:
        """The processor's gRPC size limit: what a frame from Kafka can be, plus headroom."""
        return max(
            self.processor.max_message_bytes, grpc_message_limit(self.kafka.message_max_bytes)
        )

    def camera(self, camera_id: str) -> CameraConfig:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        known = ", ".join(camera.id for camera in self.cameras) or "none"
        raise KeyError(f"no camera {camera_id!r} in [[cameras]] (configured: {known})")

    def camera_index(self, camera_id: str) -> int:
        return [camera.id for camera in self.cameras].index(camera_id)
