"""Track ids: kept while an object moves, new for new objects, never reused."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.errors import ConfigError
from panoptic_ros.results import FrameResult, Instance
from panoptic_ros.tracking import InstanceTracker

CAR, PERSON = 13, 11
Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), exclusive ends


def frame(objects: list[tuple[int, Box]], hw: tuple[int, int] = (120, 200)) -> FrameResult:
    """A frame whose k-th object (class, box) is instance k, boxes painted in order."""
    ids = np.zeros(hw, np.uint16)
    semantic = np.zeros(hw, np.uint8)
    instances = []
    for k, (class_id, (y0, x0, y1, x1)) in enumerate(objects, start=1):
        ids[y0:y1, x0:x1] = k
        semantic[y0:y1, x0:x1] = class_id
    for k, (class_id, _) in enumerate(objects, start=1):
        ys, xs = np.nonzero(ids == k)
        instances.append(
            Instance(
                index=k,
                class_id=class_id,
                class_name=str(class_id),
                score=0.9,
                bbox_xyxy=(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())),
                area_px=len(ys),
                centroid_yx=(float(ys.mean()), float(xs.mean())),
            )
        )
    return FrameResult(semantic, ids, np.zeros(hw, np.uint8), tuple(instances))


def track_ids(result: FrameResult) -> list[int]:
    return [i.track_id for i in result.instances]


def test_moving_object_keeps_its_id_and_a_new_one_gets_a_new_id() -> None:
    tracker = InstanceTracker()
    first = tracker.update(frame([(CAR, (20, 20, 60, 80))]))
    assert track_ids(first) == [1]
    # Moved 8 px right and 4 down (IoU ~0.7), and a person appears.
    second = tracker.update(frame([(PERSON, (70, 150, 110, 170)), (CAR, (24, 28, 64, 88))]))
    assert track_ids(second) == [2, 1]
    third = tracker.update(frame([(CAR, (28, 36, 68, 96)), (PERSON, (72, 152, 112, 172))]))
    assert track_ids(third) == [1, 2]


def test_two_objects_of_one_class_keep_their_own_ids() -> None:
    tracker = InstanceTracker()
    tracker.update(frame([(CAR, (10, 10, 50, 60)), (CAR, (10, 100, 50, 150))]))
    # The instance order flips (fusion orders by score), the objects move a little.
    swapped = tracker.update(frame([(CAR, (12, 104, 52, 154)), (CAR, (12, 14, 52, 64))]))
    assert track_ids(swapped) == [2, 1]


def test_ids_are_never_reused_after_an_object_disappears() -> None:
    tracker = InstanceTracker(max_age=1)
    assert track_ids(tracker.update(frame([(CAR, (20, 20, 60, 80))]))) == [1]
    for _ in range(2):  # unseen for 2 > max_age frames: forgotten
        assert track_ids(tracker.update(frame([]))) == []
    # Another car in the same place: a new object, a new id, never 1 again.
    assert track_ids(tracker.update(frame([(CAR, (20, 20, 60, 80))]))) == [2]
    tracker.reset()
    assert track_ids(tracker.update(frame([(CAR, (20, 20, 60, 80))]))) == [3]
    assert tracker.next_id == 4


def test_an_object_hidden_up_to_max_age_frames_keeps_its_id() -> None:
    tracker = InstanceTracker(max_age=2)
    tracker.update(frame([(CAR, (20, 20, 60, 80))]))
    tracker.update(frame([]))
    tracker.update(frame([]))
    assert track_ids(tracker.update(frame([(CAR, (22, 24, 62, 84))]))) == [1]
    strict = InstanceTracker(max_age=0)
    strict.update(frame([(CAR, (20, 20, 60, 80))]))
    strict.update(frame([]))
    assert track_ids(strict.update(frame([(CAR, (20, 20, 60, 80))]))) == [2]


def test_a_hidden_track_under_a_newer_one_is_still_matched() -> None:
    tracker = InstanceTracker(max_age=1)
    tracker.update(frame([(CAR, (20, 20, 60, 80))]))
    # The first car is hidden; a second one appears over part of its old place.
    assert track_ids(tracker.update(frame([(CAR, (20, 60, 60, 120))]))) == [2]
    both = tracker.update(frame([(CAR, (20, 84, 60, 144)), (CAR, (20, 20, 60, 80))]))
    assert track_ids(both) == [2, 1]


def test_class_change_or_low_overlap_gives_a_new_id() -> None:
    tracker = InstanceTracker(min_iou=0.3)
    tracker.update(frame([(CAR, (20, 20, 60, 80))]))
    assert track_ids(tracker.update(frame([(PERSON, (20, 20, 60, 80))]))) == [2]
    # Shifted by 40 of 60 px: IoU 20/100 = 0.2 < 0.3.
    assert track_ids(tracker.update(frame([(PERSON, (20, 60, 60, 120))]))) == [3]


def test_greedy_matching_prefers_the_highest_overlap() -> None:
    tracker = InstanceTracker()
    tracker.update(frame([(CAR, (20, 20, 60, 80))]))
    # Two cars now overlap the old one; the one overlapping more keeps its id.
    # IoU 30/90 = 0.33 and 30/70 = 0.43: both above min_iou, the second wins.
    result = tracker.update(frame([(CAR, (20, 50, 60, 110)), (CAR, (20, 10, 60, 50))]))
    assert track_ids(result) == [2, 1]


def test_image_size_change_restarts_tracks_and_input_is_not_modified() -> None:
    tracker = InstanceTracker()
    original = frame([(CAR, (20, 20, 60, 80))])
    tracked = tracker.update(original)
    assert original.instances[0].track_id == 0
    assert tracked.instances[0].track_id == 1
    assert tracked.instance_ids is original.instance_ids
    resized = tracker.update(frame([(CAR, (20, 20, 60, 80))], hw=(240, 400)))
    assert track_ids(resized) == [2]


def test_tracking_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    sequence = []
    for _ in range(12):
        objects: list[tuple[int, Box]] = []
        for _ in range(int(rng.integers(0, 5))):
            y, x = int(rng.integers(0, 90)), int(rng.integers(0, 160))
            objects.append((int(rng.choice([CAR, PERSON])), (y, x, y + 30, x + 40)))
        sequence.append(frame(objects))
    runs = []
    for _ in range(2):
        tracker = InstanceTracker()
        runs.append([track_ids(tracker.update(result)) for result in sequence])
    assert runs[0] == runs[1]
    issued = [i for ids in runs[0] for i in ids]
    assert issued and all(i >= 1 for i in issued)
    for ids in runs[0]:
        assert len(set(ids)) == len(ids)  # one object per id within a frame


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_iou": 1.5}, "min_iou=1.5"),
        ({"max_age": -1}, "max_age"),
        ({"sample_step": 0}, "sample_step"),
    ],
)
def test_bad_parameters_are_rejected(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        InstanceTracker(**kwargs)  # type: ignore[arg-type]
