"""The progress reporter: a live status line on a terminal, one summary line per stage elsewhere."""

import io
import sys

import pytest

from qrl_platform import progress
from qrl_platform.progress import CLEAR_LINE, Stage
from qrl_platform.settings import settings


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _drive(stream, clock, **kwargs) -> None:
    stage = Stage("daily_quotes", 4, stream=stream, clock=clock, **kwargs)
    for seconds in (10, 0.2, 9.8, 20):  # the second day comes 0.2 s after the first: no redraw
        clock.now += seconds
        stage.advance()
    clock.now += 1
    stage.finish()


def test_a_terminal_gets_a_redrawn_status_line_with_elapsed_and_eta(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    stream, clock = FakeTTY(), FakeClock()
    _drive(stream, clock)
    assert stream.getvalue().split(CLEAR_LINE) == [
        "",
        "daily_quotes: 1/4 days, 10s elapsed, ETA 30s",
        # 0.2 s later: under min_interval, not redrawn
        "daily_quotes: 3/4 days, 20s elapsed, ETA 7s",
        "daily_quotes: 4/4 days, 40s elapsed",
        "daily_quotes: 4/4 days in 41s\n",
    ]


@pytest.mark.parametrize("case", ["pipe", "ci"])
def test_ci_logs_and_pipes_get_one_line_per_stage(monkeypatch, case):
    if case == "ci":
        monkeypatch.setenv("CI", "true")
        stream = FakeTTY()
    else:
        monkeypatch.delenv("CI", raising=False)
        stream = io.StringIO()
    clock = FakeClock()
    _drive(stream, clock, in_ci=settings().in_ci)  # what the CLI reads and passes
    assert stream.getvalue() == "daily_quotes: 4/4 days in 41s\n"


def test_a_stage_that_raises_says_so_and_how_far_it_got(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    stream, clock = io.StringIO(), FakeClock()
    with pytest.raises(RuntimeError), Stage("backfill", 250, stream=stream, clock=clock) as stage:
        clock.now += 65
        stage.advance(12)
        raise RuntimeError("source down")
    assert stream.getvalue() == "backfill: 12/250 days in 1m05s (failed)\n"


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0s"), (59.6, "1m00s"), (3599, "59m59s"), (7380, "2h03m")])
def test_durations(seconds, text):
    assert progress.duration(seconds) == text


def test_stages_report_on_the_attached_terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    terminal = FakeTTY()
    progress.attach_terminal(terminal)
    try:
        stage = progress.stage("valuations", 2)
        stage.advance()
    finally:
        progress.attach_terminal(None)
    assert terminal.getvalue() == CLEAR_LINE + "valuations: 1/2 days, 0s elapsed, ETA 0s"
    assert progress.stage("valuations", 2).stream is sys.stderr
