"""ProcessBatch answers turned into each frame's outcome (the broker's side, alone)."""

from __future__ import annotations

from typing import Any

import grpc

from vspd.broker.processor_client import BATCH_TOO_LARGE, _batch_outcomes, batch_request
from vspd.v1 import frame_pb2, processor_pb2, result_pb2


class Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class Future:
    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self._result, self._error = result, error

    def exception(self) -> Exception | None:
        return self._error

    def result(self) -> Any:
        return self._result


def test_a_batch_too_large_for_the_processor_is_tried_again_not_dead_lettered() -> None:
    too_large = Failed(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max")
    outcomes = _batch_outcomes(Future(error=too_large), 0.0, 3)
    assert len(outcomes) == 3
    assert all(o.transient for o in outcomes)  # each frame alone may well fit
    assert all(o.details.startswith(BATCH_TOO_LARGE) for o in outcomes)
    down = _batch_outcomes(Future(error=Failed(grpc.StatusCode.UNAVAILABLE, "down")), 0.0, 2)
    assert [o.code for o in down] == [grpc.StatusCode.UNAVAILABLE] * 2


def test_each_item_is_its_frames_outcome_and_a_wrong_count_fails_them_all() -> None:
    ok = processor_pb2.BatchItem(result=result_pb2.Result(status=result_pb2.STATUS_OK))
    bad = processor_pb2.BatchItem(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], details="nope")
    lying = processor_pb2.BatchItem(code=0)  # "OK" without a result
    outcomes = _batch_outcomes(Future(processor_pb2.BatchResult(items=[ok, bad, lying])), 0.0, 3)
    assert outcomes[0].result is not None
    assert (outcomes[1].code, outcomes[1].details, outcomes[1].transient) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "nope",
        False,
    )
    assert outcomes[2].code is grpc.StatusCode.INTERNAL
    short = _batch_outcomes(Future(processor_pb2.BatchResult(items=[ok])), 0.0, 2)
    assert [o.code for o in short] == [grpc.StatusCode.INTERNAL] * 2
    assert "1 items for a batch of 2" in short[0].details


def test_the_request_is_the_frames_own_bytes() -> None:
    frames = [
        frame_pb2.Frame(camera_id="a", seq=1, image=b"x" * 300),  # a length over one varint byte
        frame_pb2.Frame(camera_id="b", seq=2),
    ]
    request = batch_request([f.SerializeToString() for f in frames])
    assert list(processor_pb2.FrameBatch.FromString(request).frames) == frames
    assert batch_request([]) == b""
