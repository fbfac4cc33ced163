"""The tracker alone, fed in capture order: against ground truth, and its promises one by one."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.tracking import FPS, SECOND_NS, noisy_truth_score, result_at
from vspd.tracking.assignment import best_pairs
from vspd.tracking.tracker import Tracker, TrackerSettings


@pytest.mark.parametrize("seed", range(1, 11))
def test_noisy_truth_is_tracked_with_few_identity_switches(seed: int) -> None:
    """Boxes jittered by 5 % of their size, 10 % of detections dropped, 60 s at 15 fps: ten scenes."""
    measured = noisy_truth_score(seed, 60)
    print(f"seed {seed}: {measured}")
    assert measured.idf1 >= 0.9, measured
    assert measured.switches_per_100 <= 1.0, measured


def test_an_id_is_stable_while_visible_and_never_reused() -> None:
    tracker = Tracker(TrackerSettings(lost_track_s=1.0))
    t = 1_700_000_000 * SECOND_NS
    first = result_at(t, [((0.1, 0.1, 0.2, 0.2), 0.9)])
    tracker.annotate("cam", t, first)
    track_id = first.detections[0].track_id
    for step in range(1, 30):  # moving right, 1 % of the frame per frame
        later = result_at(
            t + step * SECOND_NS // FPS, [((0.1 + step / 100, 0.1, 0.2 + step / 100, 0.2), 0.9)]
        )
        tracker.annotate("cam", t + step * SECOND_NS // FPS, later)
        assert later.detections[0].track_id == track_id
    # Gone for longer than lost_track_s, then something at the same place: a new object.
    back = t + 5 * SECOND_NS
    again = result_at(back, [((0.39, 0.1, 0.49, 0.2), 0.9)])
    tracker.annotate("cam", back, again)
    assert again.detections[0].track_id != track_id
    assert again.detections[0].track_id > track_id


def test_a_low_confidence_detection_keeps_a_track_but_starts_none() -> None:
    tracker = Tracker()
    t = 1_700_000_000 * SECOND_NS
    first = result_at(t, [((0.1, 0.1, 0.3, 0.3), 0.9)])
    tracker.annotate("cam", t, first)
    # Partly hidden: a weak detection where the object is, and a weak one elsewhere.
    weak = result_at(
        t + SECOND_NS // FPS, [((0.11, 0.1, 0.31, 0.3), 0.2), ((0.7, 0.7, 0.8, 0.8), 0.2)]
    )
    tracker.annotate("cam", t + SECOND_NS // FPS, weak)
    assert weak.detections[0].track_id == first.detections[0].track_id
    assert not weak.detections[1].HasField("track_id")


def test_labels_cameras_and_a_processors_own_ids_are_kept_apart() -> None:
    tracker = Tracker()
    t = 1_700_000_000 * SECOND_NS
    person = result_at(t, [((0.1, 0.1, 0.3, 0.3), 0.9)])
    tracker.annotate("a", t, person)
    car = result_at(t + SECOND_NS // FPS, [((0.1, 0.1, 0.3, 0.3), 0.9)])
    car.detections[0].label = "car"
    tracker.annotate("a", t + SECOND_NS // FPS, car)
    assert car.detections[0].track_id != person.detections[0].track_id  # another label
    elsewhere = result_at(t + SECOND_NS // FPS, [((0.1, 0.1, 0.3, 0.3), 0.9)], camera="b")
    tracker.annotate("b", t + SECOND_NS // FPS, elsewhere)
    assert [t.track_id for t in tracker.tracks("b")] == [elsewhere.detections[0].track_id]
    own = result_at(t + 2 * SECOND_NS // FPS, [((0.1, 0.1, 0.3, 0.3), 0.9)])
    own.detections[0].track_id = 42
    tracker.annotate("a", t + 2 * SECOND_NS // FPS, own)
    assert own.detections[0].track_id == 42  # a processor that tracks itself is respected


def test_tracks_continue_from_a_written_result_after_a_restart() -> None:
    before = Tracker()
    t = 1_700_000_000 * SECOND_NS
    written = result_at(t, [((0.1, 0.1, 0.3, 0.3), 0.9), ((0.6, 0.6, 0.8, 0.8), 0.9)])
    before.annotate("cam", t, written)
    after = Tracker()  # a new broker: it knows only what is in the results topic
    after.seed("cam", t, written)
    following = result_at(
        t + SECOND_NS // FPS, [((0.61, 0.6, 0.81, 0.8), 0.9), ((0.11, 0.1, 0.31, 0.3), 0.9)]
    )
    after.annotate("cam", t + SECOND_NS // FPS, following)
    assert [d.track_id for d in following.detections] == [
        written.detections[1].track_id,
        written.detections[0].track_id,
    ]


def test_a_flood_of_boxes_is_tracked_within_bounds() -> None:
    from vspd.tracking.tracker import MAX_DETECTIONS_TRACKED, MAX_TRACKS_PER_CAMERA

    tracker = Tracker()
    t = 1_700_000_000 * SECOND_NS
    flood = result_at(
        t, [((i / 5000, 0.0, i / 5000 + 0.0001, 0.0001), 0.6 + i / 50_000) for i in range(5000)]
    )
    tracker.annotate("cam", t, flood)
    tracked = [d for d in flood.detections if d.HasField("track_id")]
    assert len(tracked) == MAX_DETECTIONS_TRACKED
    assert min(d.confidence for d in tracked) > 0.6 + 4000 / 50_000  # the most confident ones
    assert len(tracker.tracks("cam")) <= MAX_TRACKS_PER_CAMERA


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 7).flatmap(
        lambda rows: st.lists(
            st.lists(
                st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9]) | st.floats(0, 1),
                min_size=rows,
                max_size=rows,
            ),
            min_size=1,
            max_size=7,
        )
    )
)
def test_the_assignment_is_as_good_as_scipys(columns_of_scores: list[list[float]]) -> None:
    from scipy.optimize import linear_sum_assignment

    scores = [list(row) for row in zip(*columns_of_scores, strict=True)]  # rows x columns
    pairs = best_pairs(scores)
    assert len({r for r, _ in pairs}) == len(pairs) == len({c for _, c in pairs})  # one-to-one
    assert all(scores[r][c] > 0 for r, c in pairs)
    rows, cols = linear_sum_assignment(np.asarray(scores), maximize=True)
    best = sum(scores[r][c] for r, c in zip(rows, cols, strict=True))
    assert sum(scores[r][c] for r, c in pairs) == pytest.approx(best)  # ties may pair differently


def test_the_assignment_takes_scores_that_are_not_numbers_for_zero() -> None:
    nan, inf = float("nan"), float("inf")
    assert best_pairs([[nan, nan], [nan, nan]]) == []
    assert best_pairs([[nan, 0.5], [inf, -1.0], [0.2, nan]]) == [(0, 1), (2, 0)]


def test_the_broker_side_of_tracking_imports_neither_scipy_nor_numpy() -> None:
    code = (
        "import sys, vspd.broker.daemon, vspd.tracking.tracker as t;"
        "t.match([(0, 0, 1, 1), (2, 2, 3, 3)], [(0, 0, 1, 1.1), (2, 2, 3, 3)], 0.2);"
        "print(sorted(m for m in ('scipy', 'numpy') if m in sys.modules))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert imported.stdout.strip() == "[]"
