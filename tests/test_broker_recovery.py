"""Which results an earlier owner already wrote: read from a real results topic's tail."""

from __future__ import annotations

from confluent_kafka import Producer

from tests.support.kafka import create_topics, unique_name
from vspd.broker.recovery import WrittenResults
from vspd.config.model import KafkaConfig
from vspd.wire import source_header


def write_results(bootstrap: str, topic: str, sources: list[tuple[str, int, int] | None]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for source in sources:
        headers = [source_header(*source)] if source is not None else None
        producer.produce(topic, b"result", b"cam", partition=0, headers=headers)
    assert producer.flush(30) == 0


def test_finds_exactly_the_uncommitted_offsets_that_have_results(bootstrap: str) -> None:
    results = unique_name("results")
    create_topics(bootstrap, [results], 4)
    # Results partition 0 holds frames partitions 0 and 4 (4 results partitions),
    # interleaved, plus results from another topic and some without a header.
    sources: list[tuple[str, int, int] | None] = []
    for offset in range(300):
        sources.append(("frames", 0, offset))
        if offset < 50:
            sources.append(("frames", 4, offset))
        if offset % 7 == 0:
            sources.append(("other-frames", 0, offset))
            sources.append(None)
    write_results(bootstrap, results, sources)
    recovery = WrittenResults(KafkaConfig(bootstrap_servers=bootstrap, results_topic=results))
    try:
        assert recovery.find("frames", 0, 290, 4).written == set(range(290, 300))
        # Reading backwards in growing chunks reaches the very start when it must.
        assert recovery.find("frames", 4, 0, 4).written == set(range(50))
        assert recovery.find("frames", 0, 300, 4).written == set()
        assert recovery.find("frames", 1, 0, 4).written == set()  # nothing was written for it
    finally:
        recovery.close()


def test_a_bounded_scan_still_finds_the_newest_results(bootstrap: str) -> None:
    results = unique_name("results")
    create_topics(bootstrap, [results], 1)
    write_results(bootstrap, results, [("frames", 0, offset) for offset in range(500)])
    recovery = WrittenResults(
        KafkaConfig(bootstrap_servers=bootstrap, results_topic=results), max_records=100
    )
    try:
        found = recovery.find("frames", 0, 0, 1).written
    finally:
        recovery.close()
    # Whatever the bound cuts off, it is the oldest: the newest results are all found
    # (the tail is read to EOF; the test broker's watermarks are too loose to say more).
    assert found
    assert found == set(range(min(found), 500))


def test_finds_each_cameras_last_result_to_continue_its_tracks(bootstrap: str) -> None:
    from tests.support.results import result

    results = unique_name("results")
    create_topics(bootstrap, [results], 1)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for offset in range(20):
        camera = "gate" if offset % 2 else "yard"
        written = result(camera, offset, [("person", 0.9, (0.1, 0.1, 0.2, 0.2))])
        written.detections[0].track_id = 1000 + offset
        value = written.SerializeToString()
        headers = [source_header("frames", 0, offset)]
        producer.produce(results, value, camera.encode(), partition=0, headers=headers)
    # A forged last word for the yard is not taken for its state.
    producer.produce(
        results, b"\xff garbage", b"yard", partition=0, headers=[source_header("frames", 0, 20)]
    )
    assert producer.flush(30) == 0
    recovery = WrittenResults(KafkaConfig(bootstrap_servers=bootstrap, results_topic=results))
    try:
        found = recovery.find("frames", 0, 15, 1)
    finally:
        recovery.close()
    assert found.written == set(range(15, 21))
    assert found.last_results["gate"].frame.seq == 19
    assert found.last_results["gate"].detections[0].track_id == 1019
    assert "yard" not in found.last_results
