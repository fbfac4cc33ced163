"""The processor server over real gRPC on loopback: built-ins, plug-ins, health, deadlines, errors."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import grpc
import h2.config
import h2.connection
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.plugins import sample
from tests.support.frames import frames_for, tiny_jpeg, undecodable_frame
from tests.support.processes import wait_until
from tests.support.tansu import free_port
from vspd.broker.processor_client import CallOutcome, ProcessorClient, batch_request
from vspd.capture.sources.synthetic import SyntheticScene
from vspd.config.model import BrokerConfig, ProcessorConfig
from vspd.health.v1 import health_pb2, health_pb2_grpc
from vspd.legacy import detector_pb2, detector_pb2_grpc
from vspd.processor.builtins import load_builtin
from vspd.processor.core import ProcessingCore
from vspd.processor.errors import PluginLoadError
from vspd.processor.health import NOT_SERVING, SERVING
from vspd.processor.metrics import ProcessorMetrics
from vspd.processor.plugin import CameraStates, FrameView, load_plugin
from vspd.processor.server import WORKER_PREFIX, ProcessorServer
from vspd.v1 import frame_pb2, processor_pb2, processor_pb2_grpc, result_pb2

# A detection counts as finding an object at IoU >= 0.5: the PASCAL VOC criterion,
# loose enough for a box that also covers the motion blur of a moving edge.
IOU_MATCH = 0.5


def jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(data.tobytes())


def make_frame(
    image: np.ndarray, seq: int = 0, camera: str = "cam", **metadata: str
) -> frame_pb2.Frame:
    height, width = image.shape[:2]
    return frame_pb2.Frame(
        camera_id=camera,
        session_id="session",
        seq=seq,
        width=width,
        height=height,
        encoding=frame_pb2.ENCODING_JPEG,
        image=jpeg(image),
        metadata=metadata,
    )


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def box_of(detection: Any) -> tuple[float, float, float, float]:
    return (detection.box.x_min, detection.box.y_min, detection.box.x_max, detection.box.y_max)


class Running:
    def __init__(self, server: ProcessorServer, channel: grpc.Channel) -> None:
        self.server = server
        self.channel = channel
        self.processor = processor_pb2_grpc.ProcessorStub(channel)
        self.detector = detector_pb2_grpc.DetectorStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    def check(self, service: str = "") -> Any:
        return self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


@pytest.fixture
def start_server() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(load: bool = True, **settings: Any) -> Running:
        config = ProcessorConfig(listen=f"127.0.0.1:{free_port()}", **settings)
        core = ProcessingCore(ProcessorMetrics(CollectorRegistry()))
        server = ProcessorServer(config, core, 16 * 1024 * 1024)
        server.start()
        if load:
            core.set_plugin(load_plugin(config.plugin) if config.plugin else load_builtin(config))
            server.serving()
        running = Running(server, grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        started.append(running)
        return running

    yield start
    for running in started:
        running.channel.close()
        running.server.stop(1)


def test_motion_finds_the_moving_objects_of_the_synthetic_scene(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(builtin="motion")
    scene = SyntheticScene(640, 480, objects=3, speed=0.25, size=0.15, seed=3)
    matched, judged = 0, 0
    for seq in range(120):
        image, truth = scene.render(seq / 10)
        result = running.processor.Process(make_frame(image, seq), timeout=10)
        assert result.status == result_pb2.STATUS_OK
        if seq < 30:
            continue  # the background model is still learning
        boxes = [box_of(d) for d in result.detections]
        for index, true_box in enumerate(truth):
            # Touching objects move as one region: judge only separated ones.
            if any(not _apart(true_box, other) for j, other in enumerate(truth) if j != index):
                continue
            judged += 1
            matched += max((iou(box, true_box) for box in boxes), default=0.0) >= IOU_MATCH
    assert judged >= 100
    assert matched / judged >= 0.9, f"{matched}/{judged} separated objects found"
    assert all(d.label == "motion" for d in result.detections)


def _apart(a: tuple[float, ...], b: tuple[float, ...], margin: float = 0.03) -> bool:
    return (
        a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1]
    )


def test_a_plugin_may_ask_for_fewer_pixels_and_a_jpeg_decodes_scaled_down() -> None:
    image = SyntheticScene(640, 480, objects=2, seed=4).render(0)[0]
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    png = cv2.imencode(".png", image)[1].tobytes()

    def view(data: bytes, encoding: int, width: int = 640) -> FrameView:
        frame = frame_pb2.Frame(
            camera_id="c", seq=1, width=width, height=480, encoding=encoding, image=data
        )
        return FrameView(frame, CameraStates())

    assert view(jpeg, frame_pb2.ENCODING_JPEG).image_at_least(160).shape == (120, 160, 3)
    assert view(jpeg, frame_pb2.ENCODING_JPEG).image_at_least(200).shape == (240, 320, 3)
    assert view(jpeg, frame_pb2.ENCODING_JPEG).image_at_least(400).shape == (480, 640, 3)
    # The scale comes from the JPEG's own header, not from what the Frame claims.
    assert view(jpeg, frame_pb2.ENCODING_JPEG, 5120).image_at_least(160).shape == (120, 160, 3)
    # PNG has no scaled decode: whole; a frame already decoded whole is not decoded again.
    assert view(png, frame_pb2.ENCODING_PNG).image_at_least(160).shape == (480, 640, 3)
    whole = view(jpeg, frame_pb2.ENCODING_JPEG)
    decoded = whole.image
    assert whole.image_at_least(160) is decoded
    # The reduced image is the scene, not noise: close to a resize of the whole one.
    reduced = view(jpeg, frame_pb2.ENCODING_JPEG).image_at_least(160).astype(np.int16)
    resized = cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA).astype(np.int16)
    assert np.abs(reduced - resized).mean() < 8


def test_motion_keeps_one_background_model_per_camera(start_server: Callable[..., Running]) -> None:
    running = start_server(builtin="motion")
    still = SyntheticScene(320, 240, objects=0, seed=1, noise=False).render(0)[0]
    busy = SyntheticScene(320, 240, objects=2, speed=1.0, seed=2)
    for seq in range(20):
        running.processor.Process(make_frame(still, seq, camera="quiet"), timeout=10)
        running.processor.Process(
            make_frame(busy.render(seq / 10)[0], seq, camera="busy"), timeout=10
        )
    quiet = running.processor.Process(make_frame(still, 20, camera="quiet"), timeout=10)
    moving = running.processor.Process(
        make_frame(busy.render(2.0)[0], 20, camera="busy"), timeout=10
    )
    assert len(quiet.detections) == 0
    assert len(moving.detections) >= 1


def astronaut() -> np.ndarray:
    # A real photograph of a face, shipped inside scikit-image.
    path = resources.files("skimage") / "data" / "astronaut.png"
    image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_faces_finds_the_face_in_a_real_photograph(start_server: Callable[..., Running]) -> None:
    running = start_server(builtin="faces")
    result = running.processor.Process(make_frame(astronaut()), timeout=30)
    faces = [d for d in result.detections if d.label == "face"]
    assert faces, "no face found"
    # Eileen Collins' face is in the upper middle of the 512x512 photograph.
    best = max(faces, key=lambda d: d.confidence)
    x_center = (best.box.x_min + best.box.x_max) / 2
    y_center = (best.box.y_min + best.box.y_max) / 2
    assert 0.3 < x_center < 0.7
    assert 0.05 < y_center < 0.45
    nothing = running.processor.Process(
        make_frame(np.full((240, 320, 3), 128, np.uint8)), timeout=30
    )
    assert not nothing.detections


def tiny_yolov8_model(path: Path) -> None:
    """A 2-class ONNX model in YOLOv8 layout whose output is fixed: known answers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.zeros((1, 6, 3), np.float32)
    table[0, :, 0] = [16, 16, 16, 16, 0.9, 0.1]  # class 0 at 0.9
    table[0, :, 1] = [48, 40, 20, 10, 0.05, 0.8]  # class 1 at 0.8
    table[0, :, 2] = [30, 30, 10, 10, 0.1, 0.1]  # below the confidence threshold
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["zeroed"]),
        helper.make_node("Add", ["zeroed", "table"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-yolov8",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 3])],
        initializer=[
            numpy_helper.from_array(np.array(0, np.float32), "zero"),
            numpy_helper.from_array(table, "table"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_dnn_runs_an_onnx_model_with_labels(
    start_server: Callable[..., Running], tmp_path: Path
) -> None:
    model = tmp_path / "tiny.onnx"
    tiny_yolov8_model(model)
    labels = tmp_path / "labels.txt"
    labels.write_text("person\ncar\n")
    running = start_server(
        builtin="dnn",
        dnn={
            "model": str(model),
            "labels": str(labels),
            "input_width": 64,
            "input_height": 64,
            "confidence": 0.4,
        },
    )
    result = running.processor.Process(make_frame(np.zeros((120, 160, 3), np.uint8)), timeout=30)
    found = {
        d.label: (round(d.confidence, 3), tuple(round(v, 4) for v in box_of(d)))
        for d in result.detections
    }
    assert found == {
        "person": (0.9, (0.125, 0.125, 0.375, 0.375)),
        "car": (0.8, (0.5938, 0.5469, 0.9062, 0.7031)),
    }


def test_dnn_with_a_missing_model_fails_at_load_not_per_frame(tmp_path: Path) -> None:
    with pytest.raises(PluginLoadError, match="does not exist"):
        load_builtin(ProcessorConfig(builtin="dnn", dnn={"model": str(tmp_path / "absent.onnx")}))


def test_health_goes_serving_only_when_the_model_is_loaded(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(load=False, plugin="tests.plugins.sample:behave")
    assert running.check() == NOT_SERVING
    assert running.check("vspd.v1.Processor") == NOT_SERVING
    with pytest.raises(grpc.RpcError) as caught:
        running.processor.Process(make_frame(np.zeros((8, 8, 3), np.uint8)), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

    watch = running.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert next(watch).status == NOT_SERVING
    running.server.core.set_plugin(load_plugin("tests.plugins.sample:behave"))
    running.server.serving()
    assert next(watch).status == SERVING
    assert running.check("vspd.v1.Processor") == SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        running.check("no.such.Service")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    watch.cancel()


def test_graceful_shutdown_finishes_in_flight_calls(start_server: Callable[..., Running]) -> None:
    running = start_server(plugin="tests.plugins.sample:behave")
    gate = "shutdown"
    sample.gates[gate] = threading.Event()
    sample.entered[gate] = threading.Event()
    in_flight = running.processor.Process.future(
        make_frame(np.zeros((8, 8, 3), np.uint8), 1, gate=gate), timeout=30
    )
    assert sample.entered[gate].wait(30)
    stopper = threading.Thread(target=running.server.stop, args=(20,))
    stopper.start()
    # Health says NOT_SERVING while the call is still running...
    while running.server.health.status_of("") != NOT_SERVING:
        threading.Event().wait(0.01)
    assert not in_flight.done()
    sample.gates[gate].set()
    # ... and the call still completes with its result.
    assert in_flight.result().attributes["seen"] == "1"
    stopper.join(30)
    assert not stopper.is_alive()


@pytest.mark.parametrize("concurrency", ["threads", "asyncio"])
def test_call_past_its_deadline_is_not_processed(
    start_server: Callable[..., Running], concurrency: str
) -> None:
    running = start_server(plugin="tests.plugins.sample:behave", workers=1, concurrency=concurrency)
    gate = f"deadline-{concurrency}"
    sample.gates[gate] = threading.Event()
    sample.entered[gate] = threading.Event()
    image = np.zeros((8, 8, 3), np.uint8)
    blocker = running.processor.Process.future(make_frame(image, 1001, gate=gate), timeout=30)
    assert sample.entered[gate].wait(30)
    late = running.processor.Process.future(make_frame(image, 1002), timeout=0.2)
    with pytest.raises(grpc.RpcError) as caught:
        late.result()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    sample.gates[gate].set()
    blocker.result()
    after = running.processor.Process(make_frame(image, 1003), timeout=30)
    assert after.attributes["seen"] == "1003"
    assert 1001 in sample.calls
    assert 1003 in sample.calls
    assert 1002 not in sample.calls


@pytest.mark.parametrize("concurrency", ["threads", "asyncio"])
def test_bad_image_is_invalid_argument_and_plugin_error_is_internal(
    start_server: Callable[..., Running], concurrency: str
) -> None:
    running = start_server(plugin="tests.plugins.sample:behave", concurrency=concurrency)
    garbage = undecodable_frame("cam", 1, 8, 8)
    with pytest.raises(grpc.RpcError) as bad:
        running.processor.Process(garbage, timeout=10)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode as ENCODING_JPEG" in bad.value.details()

    raw_wrong_size = frame_pb2.Frame(
        camera_id="cam",
        session_id="s",
        seq=2,
        width=8,
        height=8,
        encoding=frame_pb2.ENCODING_RAW_BGR24,
        image=b"x" * 10,
    )
    with pytest.raises(grpc.RpcError) as raw:
        running.processor.Process(raw_wrong_size, timeout=10)
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "needs 192 bytes, got 10" in raw.value.details()

    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(grpc.RpcError) as boom:
        running.processor.Process(make_frame(image, 3, explode="yes"), timeout=10)
    assert boom.value.code() == grpc.StatusCode.INTERNAL
    assert "RuntimeError: boom on 3" in boom.value.details()

    ok = running.processor.Process(make_frame(image, 4), timeout=10)
    assert ok.status == result_pb2.STATUS_OK
    assert ok.processor_name == "tests.plugins.sample:behave"
    assert ok.processor_version == "9.9"
    assert ok.frame.seq == 4
    assert not ok.frame.image  # the caller has it already


def test_raw_bgr_frames_are_accepted(start_server: Callable[..., Running]) -> None:
    running = start_server(plugin="tests.plugins.sample:behave")
    image = np.zeros((6, 10, 3), np.uint8)
    frame = frame_pb2.Frame(
        camera_id="c",
        session_id="s",
        seq=5,
        width=10,
        height=6,
        encoding=frame_pb2.ENCODING_RAW_BGR24,
        image=image.tobytes(),
    )
    result = running.processor.Process(frame, timeout=10)
    assert box_of(result.detections[0]) == pytest.approx((0.0, 0.0, 0.5, 0.25))


@pytest.mark.parametrize("concurrency", ["threads", "asyncio"])
def test_async_plugins_run_in_both_concurrency_models(
    start_server: Callable[..., Running], concurrency: str
) -> None:
    running = start_server(plugin="tests.plugins.sample:async_behave", concurrency=concurrency)
    result = running.processor.Process(make_frame(np.zeros((8, 8, 3), np.uint8)), timeout=10)
    assert [d.label for d in result.detections] == ["async-thing"]


def test_class_plugins_keep_state_per_camera(start_server: Callable[..., Running]) -> None:
    running = start_server(plugin="tests.plugins.sample:CountPerCamera")
    image = np.zeros((8, 8, 3), np.uint8)
    counts = [
        running.processor.Process(make_frame(image, i, camera=cam), timeout=10).attributes["count"]
        for i, cam in enumerate(["a", "a", "b", "a", "b"])
    ]
    assert counts == ["1", "2", "1", "3", "2"]


def test_plugin_returning_the_wrong_type_is_internal_with_a_hint(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(plugin="tests.plugins.sample:wrong_type")
    with pytest.raises(grpc.RpcError) as caught:
        running.processor.Process(make_frame(np.zeros((8, 8, 3), np.uint8)), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "expected a list of Detection" in caught.value.details()


def test_plugin_installed_as_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `pip install my-models` with [project.entry-points."vspd.processors"] leaves behind.
    dist = tmp_path / "my_models-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-models\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(
        "[vspd.processors]\ncars = tests.plugins.sample:behave\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = load_plugin("cars")
    assert (plugin.name, plugin.version, plugin.is_async) == ("cars", "1.2.3", False)
    assert plugin.function is sample.behave


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("tests.plugins.absent:f", "cannot import 'tests.plugins.absent'"),
        ("tests.plugins.sample:absent", "has no 'absent'"),
        (
            "no-such-entry-point",
            "neither 'module:function' nor an installed vspd.processors entry point",
        ),
    ],
)
def test_plugin_load_errors_are_specific(spec: str, reason: str) -> None:
    with pytest.raises(PluginLoadError, match=reason):
        load_plugin(spec)


@pytest.mark.parametrize("concurrency", ["threads", "asyncio"])
def test_detector_contract_serves_any_plugin_with_pixel_boxes(
    start_server: Callable[..., Running], concurrency: str
) -> None:
    running = start_server(
        plugin="tests.plugins.sample:behave", api="detector", concurrency=concurrency
    )
    image = np.zeros((100, 200, 3), np.uint8)
    reply = running.detector.Detect(
        detector_pb2.ImageInfo(width=200, height=100, image=jpeg(image)), timeout=10
    )
    (detection,) = reply.detections
    assert detection.category == "thing"
    assert detection.confidence == pytest.approx(0.75)
    assert (detection.x1, detection.y1, detection.x2, detection.y2) == pytest.approx(
        (0, 0, 100, 25)
    )
    assert reply.image_info.width == 200
    raw = running.detector.Detect(
        detector_pb2.ImageInfo(width=200, height=100, image=image.tobytes()), timeout=10
    )
    assert raw.detections[0].x2 == pytest.approx(100)
    assert running.check("Detector") == SERVING


def _send_headers_only(port: int) -> socket.socket:
    """A hostile client: opens a Process call (HTTP/2 HEADERS) and never sends its body."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    connection.send_headers(
        1,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{port}"),
            (":path", "/vspd.v1.Processor/Process"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
        end_stream=False,
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(connection.data_to_send())
    return sock


def test_calls_that_never_send_their_body_hold_no_worker(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(plugin="tests.plugins.sample:behave", workers=2)
    hostile = [_send_headers_only(running.server.port) for _ in range(8)]
    try:
        # Health and real calls are still answered, by the two workers the plug-in has.
        assert running.check() == SERVING
        frame = frame_pb2.Frame.FromString(frames_for(["after"], 1)[0][1])
        result = running.processor.Process(frame, timeout=10)
        assert result.attributes["seen"] == "0"
    finally:
        for sock in hostile:
            sock.close()


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(plugin="tests.plugins.sample:behave")
    data = bytearray(tiny_jpeg())
    index = 2
    while data[index + 1] not in (0xC0, 0xC2):
        index += 2 + int.from_bytes(data[index + 2 : index + 4], "big")
    data[index + 5 : index + 9] = (20000).to_bytes(2, "big") * 2
    frame = frame_pb2.Frame.FromString(frames_for(["huge"], 1)[0][1])
    frame.image = bytes(data)
    with pytest.raises(grpc.RpcError) as failure:
        running.processor.Process(frame, timeout=10)
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "20000x20000" in (failure.value.details() or "")


def test_a_batch_answers_each_frame_with_its_own_status_in_order(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(plugin="tests.plugins.sample:behave", max_batch=4)
    info = running.processor.Describe(processor_pb2.DescribeRequest(), timeout=10)
    assert info.max_batch == 4
    assert 0 < info.max_batch_bytes < 16 * 1024 * 1024
    image = np.zeros((8, 8, 3), np.uint8)
    garbage = undecodable_frame("cam", 2, 8, 8)
    frames = [
        make_frame(image, 1),
        garbage,
        make_frame(image, 3, explode="yes"),
        make_frame(image, 4),
    ]
    # Built as the broker builds it: from the frames' own bytes, not parsed again.
    request = batch_request([frame.SerializeToString() for frame in frames])
    assert list(processor_pb2.FrameBatch.FromString(request).frames) == frames
    call = running.channel.unary_unary(
        "/vspd.v1.Processor/ProcessBatch",
        request_serializer=None,
        response_deserializer=processor_pb2.BatchResult.FromString,
    )
    answer = call(request, timeout=10)

    codes = [
        grpc.StatusCode.OK.value[0] if item.HasField("result") else item.code
        for item in answer.items
    ]
    assert codes == [
        grpc.StatusCode.OK.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        grpc.StatusCode.INTERNAL.value[0],
        grpc.StatusCode.OK.value[0],
    ]
    assert [item.result.frame.seq for item in answer.items if item.HasField("result")] == [1, 4]
    assert "does not decode as ENCODING_JPEG" in answer.items[1].details
    assert "RuntimeError: boom on 3" in answer.items[2].details

    # More frames than Describe allows: the whole call is refused, plainly.
    with pytest.raises(grpc.RpcError) as refused:
        call(batch_request([frames[0].SerializeToString()] * 5), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 4" in refused.value.details()
    assert call(b"", timeout=10).items == []  # an empty batch is an empty answer


def test_a_batch_keeps_one_cameras_frames_in_order_for_a_stateful_plugin(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(plugin="tests.plugins.sample:strict_order", max_batch=16)
    image = np.zeros((8, 8, 3), np.uint8)
    cameras = [f"batch-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    # Interleaved as a client may send them: each camera's frames 0..5, in order.
    frames = [make_frame(image, seq, camera=camera) for seq in range(6) for camera in cameras]
    call = running.channel.unary_unary(
        "/vspd.v1.Processor/ProcessBatch",
        request_serializer=None,
        response_deserializer=processor_pb2.BatchResult.FromString,
    )
    answer = call(batch_request([f.SerializeToString() for f in frames]), timeout=30)
    assert all(item.HasField("result") for item in answer.items), [i.details for i in answer.items]


def test_the_broker_keeps_a_watch_open_so_that_calls_start_no_thread(
    start_server: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    """gRPC Python starts a completion thread whenever a channel goes from no call to one;
    the broker's client holds a health Watch open per channel so that this happens once."""
    running = start_server()
    client = ProcessorClient(
        BrokerConfig(processor_addresses=[f"127.0.0.1:{running.server.port}"]), 16 * 1024 * 1024
    )
    keeper = client.keepers[0]
    frame = frame_pb2.Frame.FromString(frames_for(["cam"], 1)[0][1])

    def call() -> CallOutcome:
        outcomes: list[CallOutcome] = []
        finished = threading.Event()
        client.call(
            frame.SerializeToString(), frame, lambda o: (outcomes.append(o), finished.set())
        )
        assert finished.wait(10)
        return outcomes[0]

    try:
        assert call().code is grpc.StatusCode.OK
        assert keeper.open
        started: list[str] = []
        start = threading.Thread.start

        def counted_start(thread: threading.Thread) -> None:
            if not thread.name.startswith((WORKER_PREFIX, "health")):  # the server's own
                started.append(thread.name)
            start(thread)

        monkeypatch.setattr(threading.Thread, "start", counted_start)
        for _ in range(5):  # one after the other: the channel has no call in between
            assert call().code is grpc.StatusCode.OK
        assert started == []
        monkeypatch.undo()
        running.server.stop(1)  # the stream ends with the server; the next call opens it again
        wait_until(lambda: not keeper.open, 10, "the Watch stream to end with its server")
    finally:
        client.close()
    assert not keeper.open


class _FloodingHealth(health_pb2_grpc.HealthServicer):
    def Watch(self, request: Any, context: Any) -> Iterator[health_pb2.HealthCheckResponse]:
        while context.is_active():
            yield health_pb2.HealthCheckResponse(status=SERVING)


@pytest.mark.parametrize("health", ["none", "flooding"])
def test_a_server_without_health_or_flooding_it_is_not_watched_again(health: str) -> None:
    server = grpc.server(ThreadPoolExecutor(2))
    if health == "flooding":
        health_pb2_grpc.add_HealthServicer_to_server(_FloodingHealth(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = ProcessorClient(BrokerConfig(processor_addresses=[f"127.0.0.1:{port}"]), 1 << 20)
    keeper = client.keepers[0]
    try:
        keeper.keep_open()  # UNIMPLEMENTED, or cut off after WATCH_ANSWERS_MAX answers
        wait_until(lambda: keeper.unsupported and not keeper.open, 10, "the stream given up")
        keeper.keep_open()
        assert not keeper.open
    finally:
        client.close()
        server.stop(0)
