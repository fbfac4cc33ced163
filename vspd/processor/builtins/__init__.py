"""Processors that need nothing beyond OpenCV, so that vspd works out of the box."""

from __future__ import annotations

from vspd.config.model import ProcessorConfig
from vspd.processor.plugin import LoadedPlugin, make_plugin

BUILTIN_VERSION = "1"


def load_builtin(config: ProcessorConfig) -> LoadedPlugin:
    # Imported here: each built-in loads its model in its constructor.
    if config.builtin == "motion":
        from vspd.processor.builtins.motion import MotionDetector

        return make_plugin("motion", BUILTIN_VERSION, MotionDetector(config.motion))
    if config.builtin == "faces":
        from vspd.processor.builtins.faces import FaceDetector

        return make_plugin("faces", BUILTIN_VERSION, FaceDetector(config.faces))
    from vspd.processor.builtins.dnn import DnnDetector

    return make_plugin("dnn", BUILTIN_VERSION, DnnDetector(config.dnn))
