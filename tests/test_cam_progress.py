"""Progress of a long CAM request: the engine says how many of each perturbation method's inputs have run,
and the board keeps what a polling client reads, by its token, only while the request is in flight."""

from __future__ import annotations

import pytest
import torch

from app.engine.cam import compute_cams
from app.studio.progress import FINISHED, FINISHED_SECONDS, MAPS, STARTING, ProgressBoard, RequestProgress
from tests.test_cam_score_passes import model as five_channel_model


def test_the_engine_reports_each_perturbation_batch_and_the_end():
    """Five channels: one dead, three with the same mask, one reversed (test_cam_score_passes). Score-CAM
    runs 2 masked inputs, Ablation-CAM ablates the 4 live channels; each method says when it begins."""
    events: list[tuple[str, int, int]] = []
    image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    compute_cams(five_channel_model(), image, "0", ["gradcam", "scorecam", "ablationcam"], target=2,
                 score_batch_size=1, ablation_batch_size=3, progress=lambda *event: events.append(event))
    assert events == [("gradcam",), ("scorecam",), ("scorecam", 0, 2), ("scorecam", 1, 2), ("scorecam", 2, 2),
                      ("ablationcam",), ("ablationcam", 0, 4), ("ablationcam", 3, 4), ("ablationcam", 4, 4)]


def test_without_a_listener_nothing_is_reported_and_the_maps_are_the_same():
    image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    heard = compute_cams(five_channel_model(), image, "0", ["scorecam", "ablationcam"], target=2,
                         progress=lambda *event: None)
    unheard = compute_cams(five_channel_model(), image, "0", ["scorecam", "ablationcam"], target=2)
    for method in ("scorecam", "ablationcam"):
        torch.testing.assert_close(heard.maps[method].raw, unheard.maps[method].raw)


def test_a_request_starts_starting_and_reads_what_its_worker_wrote():
    progress = RequestProgress()
    assert progress.snapshot() == {"task": STARTING, "done": 0, "total": 0, "seconds": pytest.approx(0, abs=1),
                                   "task_seconds": pytest.approx(0, abs=1), "note": ""}
    progress(MAPS)
    progress("scorecam", 64, 500)
    snapshot = progress.snapshot()
    assert (snapshot["task"], snapshot["done"], snapshot["total"]) == ("scorecam", 64, 500)
    assert snapshot["seconds"] >= 0


def test_the_board_lists_a_token_while_its_request_runs_then_as_finished_for_a_moment(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("app.studio.progress.time.monotonic", lambda: now[0])
    board = ProgressBoard()
    with board.follow("token-1234") as progress:
        progress("scorecam", 1, 2)
        assert board.get("token-1234")["done"] == 1
        assert board.get("other-token") is None
    # A poll that crossed the answer on its way finds it finished, not a 404 (a browser logs those as errors).
    assert board.get("token-1234")["task"] == FINISHED and board.get("token-1234")["done"] == 1
    now[0] += FINISHED_SECONDS + 0.1
    assert board.get("token-1234") is None


def test_the_board_forgets_a_token_when_its_request_fails(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("app.studio.progress.time.monotonic", lambda: now[0])
    board = ProgressBoard()
    with pytest.raises(RuntimeError), board.follow("token-1234"):
        raise RuntimeError("the request failed")
    assert board.get("token-1234")["task"] == FINISHED
    now[0] += FINISHED_SECONDS + 0.1
    with board.follow("token-5678"):  # forgotten when the board is next used, read or not
        assert list(board._requests) == ["token-5678"]


def test_a_route_s_record_takes_over_the_request_s_and_hands_back_what_it_reached():
    """The server follows a request from its arrival (app/api/followed.py); its route's record takes the token
    over, and when the route's block ends with work left (encoding the answer), the request is still in flight:
    polls see its last task, and `finished` only once the whole request has ended."""
    board = ProgressBoard()
    with board.follow("token-1234") as arrival:
        arrival(STARTING)
        with board.follow("token-1234") as route:
            route("ablationcam", 2, 20)
            assert board.get("token-1234")["task"] == "ablationcam"
        assert (board.get("token-1234")["task"], board.get("token-1234")["done"]) == ("ablationcam", 2)
    assert (board.get("token-1234")["task"], board.get("token-1234")["done"]) == (FINISHED, 2)


def test_past_capacity_a_request_runs_unfollowed():
    board = ProgressBoard(capacity=1)
    with board.follow("token-0001"), board.follow("token-0002") as unlisted:
        unlisted("scorecam", 1, 2)  # still a working record for the request itself
        assert board.get("token-0001") is not None and board.get("token-0002") is None
    with board.follow("token-0001"), board.follow("token-0001") as again:  # a listed token: no growth
        again("scorecam", 3, 4)
        assert board.get("token-0001")["done"] == 3
    with board.follow(None) as untokened:
        untokened(MAPS)
        assert untokened.snapshot()["task"] == MAPS and board.get("token-0001")["task"] == FINISHED



def test_a_task_is_timed_from_its_first_report(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("app.studio.progress.time.monotonic", lambda: now[0])
    progress = RequestProgress()
    now[0] = 101.0
    progress("scorecam")
    now[0] = 104.0
    progress("scorecam", 64, 500)  # the same task: its clock keeps running
    now[0] = 105.5
    assert progress.snapshot() == {"task": "scorecam", "done": 64, "total": 500, "seconds": 5.5, "task_seconds": 4.5,
                                   "note": "Score-CAM: 64 of 500 masked images"}
    progress("ablationcam", 0, 10)
    assert progress.snapshot()["task_seconds"] == 0


def test_a_request_followed_from_its_arrival_counts_its_seconds_from_then(monkeypatch):
    """The server lists a followed request as it arrives (app/api/followed.py), and its route takes the token
    over once it runs: the seconds still count from the arrival, as `seconds` promises."""
    now = [100.0]
    monkeypatch.setattr("app.studio.progress.time.monotonic", lambda: now[0])
    board = ProgressBoard()
    with board.follow("token-1234"):  # on arrival
        now[0] = 101.0  # queued for a worker thread
        with board.follow("token-1234") as route:
            route(MAPS)
            now[0] = 102.5
            assert (board.get("token-1234")["seconds"], board.get("token-1234")["task_seconds"]) == (2.5, 1.5)
