"""The plug-in API: what a user's processing function receives and returns.

A plug-in is a plain function, sync or async::

    from vspd.processor.plugin import Detection, FrameView

    def detect(frame: FrameView) -> list[Detection]:
        gray = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)  # decoded on first use
        ...
        return [Detection.from_pixels("car", 0.9, x1, y1, x2, y2, frame.width, frame.height)]

named in the config as ``plugin = "package.module:detect"`` or installed as an
entry point in the ``vspd.processors`` group. A class is accepted too: it is
instantiated once at start-up (load models in ``__init__``; the server reports
SERVING only after that) and then called like a function.

Per-camera state (a background model, a tracker): ``frame.state`` is a dict
kept per camera (the least recently used cameras' states are evicted beyond
``MAX_CAMERA_STATES``). A plug-in whose state needs each camera's frames one
at a time and in capture order declares it::

    @ordered_per_camera
    def detect(frame: FrameView) -> Output: ...

(or a class attribute ``ordered_per_camera = True``). The processor says so to
the broker (``Processor.Describe``), which then keeps at most one call in
flight per camera, in capture order. Without it, calls for one camera run
concurrently and in any order: hold ``frame.state_lock`` while using the state.
Object tracking across frames belongs where the order is: in such a plug-in,
or downstream of the results topic.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vspd.images import jpeg_size, png_size
from vspd.processor.errors import InvalidFrameError, PluginLoadError
from vspd.v1 import frame_pb2

Image = npt.NDArray[np.uint8]
ENTRY_POINT_GROUP = "vspd.processors"


@dataclass(frozen=True)
class Detection:
    """One detected object; box is (x_min, y_min, x_max, y_max) in 0..1 of the frame."""

    label: str
    confidence: float
    box: tuple[float, float, float, float]
    track_id: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_pixels(
        cls,
        label: str,
        confidence: float,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        width: int,
        height: int,
        **extra: Any,
    ) -> Detection:
        box = (
            _clamp(x1 / width),
            _clamp(y1 / height),
            _clamp(x2 / width),
            _clamp(y2 / height),
        )
        return cls(label, float(confidence), box, **extra)


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, float(value)))


@dataclass(frozen=True)
class Output:
    """What a plug-in returns when it has attributes as well as detections."""

    detections: list[Detection] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)


# Cameras whose state is kept; beyond, the least recently seen is forgotten, so
# that callers inventing camera ids cannot grow the processor's memory for ever.
MAX_CAMERA_STATES = 256


def ordered_per_camera(function: Any) -> Any:
    """Declare that a plug-in must see each camera's frames one at a time, in order."""
    function.ordered_per_camera = True
    return function


class CameraStates:
    """Per-camera state dicts and locks, created on first use, least recently used evicted."""

    def __init__(self, capacity: int = MAX_CAMERA_STATES) -> None:
        self._guard = threading.Lock()
        self._capacity = capacity
        self._states: collections.OrderedDict[str, tuple[dict[str, Any], threading.Lock]] = (
            collections.OrderedDict()
        )

    def get(self, camera_id: str) -> tuple[dict[str, Any], threading.Lock]:
        with self._guard:
            entry = self._states.get(camera_id)
            if entry is None:
                entry = ({}, threading.Lock())
                self._states[camera_id] = entry
                while len(self._states) > self._capacity:
                    self._states.popitem(last=False)
            else:
                self._states.move_to_end(camera_id)
            return entry

    def __len__(self) -> int:
        return len(self._states)


class FrameView:
    """A frame as a plug-in sees it: metadata at once, pixels decoded on first use."""

    def __init__(self, frame: frame_pb2.Frame, states: CameraStates) -> None:
        self.camera_id = frame.camera_id
        self.session_id = frame.session_id
        self.seq = frame.seq
        self.capture_time_unix_ns = frame.capture_time_unix_ns
        self.capture_monotonic_ns = frame.capture_monotonic_ns
        self.width = frame.width
        self.height = frame.height
        self.encoding = frame.encoding
        self.metadata = dict(frame.metadata)
        self.data = frame.image
        check_image_header(frame.image, frame.encoding, frame.width, frame.height)
        self.state, self.state_lock = states.get(frame.camera_id)

    @property
    def key(self) -> str:
        return f"{self.camera_id}/{self.session_id}/{self.seq}"

    @cached_property
    def image(self) -> Image:
        """The pixels as a BGR uint8 array of shape (height, width, 3)."""
        return decode_image(self.data, self.encoding, self.width, self.height)

    def image_at_least(self, width: int) -> Image:
        """The pixels at a reduced size at least `width` wide (or whole, if not wider).

        A JPEG is decoded directly at 1/2, 1/4 or 1/8 of its size (its DCT scales for
        free): a few times less CPU than a whole decode, and no full-size buffer.
        Already decoded whole: that image. For plug-ins that need few pixels (motion).
        """
        if "image" in self.__dict__ or self.encoding != frame_pb2.ENCODING_JPEG:
            return self.image
        # The JPEG's own header, not the Frame's width field: a sender may say anything.
        declared = jpeg_size(self.data)
        whole = declared[0] if declared is not None else self.width
        factor = next((f for f in (8, 4, 2) if whole // f >= width), 1)
        if factor == 1:
            return self.image
        return decode_image(self.data, self.encoding, self.width, self.height, reduce_by=factor)


_SIGNATURES: dict[int, bytes] = {
    frame_pb2.ENCODING_JPEG: b"\xff\xd8\xff",
    frame_pb2.ENCODING_PNG: b"\x89PNG\r\n\x1a\n",
}


# Above this many pixels an image is refused before decoding (8K is 33 MP).
MAX_PIXELS = 40_000_000


def check_image_header(data: bytes, encoding: int, width: int, height: int) -> None:
    """Cheap checks at once, so that even a plug-in that never looks at the
    pixels rejects a frame that cannot be an image; decoding stays lazy. The
    size an encoded image declares is read from its header and bounded."""
    if not data:
        raise InvalidFrameError("frame has no image bytes")
    if encoding == frame_pb2.ENCODING_RAW_BGR24:
        if len(data) != width * height * 3:
            raise InvalidFrameError(
                f"raw BGR24 image of {width}x{height} needs {width * height * 3} bytes, got {len(data)}"
            )
        return
    signature = _SIGNATURES.get(encoding)
    if signature is None:
        raise InvalidFrameError(f"unsupported image encoding {encoding}")
    if not data.startswith(signature):
        name = frame_pb2.Encoding.Name(encoding)
        raise InvalidFrameError(f"image does not decode as {name}: wrong signature")
    declared = jpeg_size(data) if encoding == frame_pb2.ENCODING_JPEG else png_size(data)
    if declared is not None and declared[0] * declared[1] > MAX_PIXELS:
        raise InvalidFrameError(
            f"image declares {declared[0]}x{declared[1]} pixels, over the limit of {MAX_PIXELS}"
        )


_REDUCED_COLOR = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def decode_image(data: bytes, encoding: int, width: int, height: int, reduce_by: int = 1) -> Image:
    """Decode to BGR; `reduce_by` (1, 2, 4, 8: JPEG only) scales it down while decoding."""
    if not data:
        raise InvalidFrameError("frame has no image bytes")
    if encoding == frame_pb2.ENCODING_RAW_BGR24:
        expected = width * height * 3
        if len(data) != expected:
            raise InvalidFrameError(
                f"raw BGR24 image of {width}x{height} needs {expected} bytes, got {len(data)}"
            )
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    if encoding not in (frame_pb2.ENCODING_JPEG, frame_pb2.ENCODING_PNG):
        raise InvalidFrameError(f"unsupported image encoding {encoding}")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED_COLOR[reduce_by])
    if image is None:
        name = frame_pb2.Encoding.Name(encoding)
        raise InvalidFrameError(f"image does not decode as {name} ({len(data)} bytes)")
    decoded: Image = image
    return decoded


PluginResult = Output | list[Detection] | None


@dataclass(frozen=True)
class LoadedPlugin:
    name: str
    version: str
    function: Callable[[FrameView], Any]
    is_async: bool
    # Calls for one camera must come one at a time, in capture order.
    ordered_per_camera: bool = False


def normalise_output(value: object) -> Output:
    if value is None:
        return Output()
    if isinstance(value, Output):
        return value
    if isinstance(value, list | tuple) and all(isinstance(item, Detection) for item in value):
        return Output(detections=list(value))
    raise TypeError(
        f"plug-in returned {type(value).__name__}; expected a list of Detection, an Output or None"
    )


def load_plugin(spec: str, plugin_path: Sequence[str] = ()) -> LoadedPlugin:
    """Load "package.module:attribute" or a `vspd.processors` entry point by name.

    ``plugin_path``: directories searched before the installed packages.
    """
    if ":" in spec:
        target, plugin_version = import_target(spec, plugin_path)
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
        if not matches:
            known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            raise PluginLoadError(
                f"plug-in {spec!r} is neither 'module:function' nor an installed "
                f"{ENTRY_POINT_GROUP} entry point (installed: {', '.join(known) or 'none'})"
            )
        entry = matches[0]
        try:
            target = entry.load()
        except Exception as exc:  # noqa: BLE001 - any import error of user code is a load error
            raise PluginLoadError(
                f"plug-in {spec!r}: entry point {entry.value!r} fails: {exc}"
            ) from None
        plugin_version = entry.dist.version if entry.dist is not None else ""
    return make_plugin(spec, plugin_version, target)


def import_target(spec: str, plugin_path: Sequence[str] = ()) -> tuple[Any, str]:
    """The object named by "package.module:attribute", and its version; one clear error."""
    module_name, _, attribute = spec.partition(":")
    for directory in reversed(plugin_path):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        searched = ", ".join(plugin_path) or "none"
        raise PluginLoadError(
            f"plug-in {spec!r}: cannot import {module_name!r}: {exc} (plugin_path: {searched}; "
            "put the package in one of those directories or add its directory there)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module fails while importing
        raise PluginLoadError(
            f"plug-in {spec!r}: importing {module_name!r} fails: {type(exc).__name__}: {exc}"
        ) from None
    try:
        target = getattr(module, attribute)
    except AttributeError:
        raise PluginLoadError(f"plug-in {spec!r}: {module_name!r} has no {attribute!r}") from None
    plugin_version = str(getattr(module, "__version__", "") or _distribution_version(module_name))
    return target, plugin_version


def make_plugin(name: str, plugin_version: str, target: Any) -> LoadedPlugin:
    if inspect.isclass(target):
        try:
            target = target()
        except Exception as exc:
            raise PluginLoadError(f"plug-in {name!r}: setting it up failed: {exc}") from exc
    if not callable(target):
        raise PluginLoadError(f"plug-in {name!r} is not callable")
    call = getattr(target, "__call__", target)  # noqa: B004 - instances: look at __call__
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(call)
    ordered = bool(getattr(target, "ordered_per_camera", False))
    return LoadedPlugin(name, plugin_version, target, is_async, ordered)


def _distribution_version(module_name: str) -> str:
    try:
        return version(module_name.split(".", maxsplit=1)[0])
    except PackageNotFoundError:
        return ""
