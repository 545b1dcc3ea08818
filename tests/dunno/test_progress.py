"""dunno.progress: a tqdm bar on a terminal, spaced plain lines otherwise, nothing when off;
and the reports of dunno.training.fit. No test needs a real terminal: streams are StringIO
objects that do or do not claim to be one."""

from __future__ import annotations

import io
import re

import pytest
import torch

from dunno.progress import (
    Progress,
    format_duration,
    format_values,
    is_quiet,
    progress_enabled,
    reporting,
    reports_progress,
    set_quiet,
    write_line,
)
from dunno.training import fit

pytestmark = pytest.mark.one_thread


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """A fake clock: ``step`` seconds per call."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _counts(text: str) -> list[int]:
    return [int(m) for m in re.findall(r": (\d+)/", text)]


@pytest.mark.parametrize("seconds_per_unit, expected", [
    # 2 s per unit: 10 s pass after 5 units but 10% only after 10 -> a line every 10 units
    (2.0, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
    # 0.5 s per unit: 10% after 10 units but 10 s only after 20 -> a line every 20 units
    (0.5, [20, 40, 60, 80, 100]),
])
def test_plain_lines_come_at_the_rarer_of_10_percent_and_10_seconds(seconds_per_unit, expected):
    out = io.StringIO()
    with reporting(stream=out):
        bar = Progress(total=100, desc="pass", unit="ex", enabled=True,
                       clock=Clock(seconds_per_unit))
        for _ in range(100):
            bar.update(1)
        bar.close()
    lines = out.getvalue().splitlines()
    assert _counts(out.getvalue()) == [*expected, 100]  # the periodic lines, then the final one
    assert lines[-1].startswith("pass: 100/100 ex (100%) in ")
    assert "\r" not in out.getvalue()  # plain lines only, nothing redrawn


def test_plain_line_text_eta_postfix_and_final_line():
    out = io.StringIO()
    clock = Clock(1.0)  # the constructor reads it once (t=1), each update once more
    with reporting(stream=out, interval=0, fraction=0.5):
        bar = Progress(total=4, desc="logits mnist (test)", unit="ex", enabled=True,
                       clock=clock)
        bar.set_postfix({"loss": 0.123456, "step": 3})
        bar.update(2)  # t=2: 1 s elapsed, 2 of 4 done -> 1 s left
        bar.close()  # t=3
    assert out.getvalue().splitlines() == [
        "logits mnist (test): 2/4 ex (50%), 1.0s elapsed, ~1.0s left  loss 0.1235  step 3",
        "logits mnist (test): 2/4 ex (50%) in 2.0s  loss 0.1235  step 3",
    ]


def test_unknown_total_writes_by_time_only():
    out = io.StringIO()
    with reporting(stream=out, interval=3):
        bar = Progress(desc="batches", unit="batch", enabled=True, clock=Clock(1.0))
        for _ in range(7):
            bar.update(1)
        bar.close()
    assert out.getvalue().splitlines()[:2] == ["batches: 3 batch, 3.0s elapsed",
                                               "batches: 6 batch, 6.0s elapsed"]
    assert out.getvalue().splitlines()[2].startswith("batches: 7 batch in ")


def test_iterating_passes_items_through_and_ends_the_pass():
    out = io.StringIO()
    with reporting(stream=out, interval=0, fraction=0):
        items = list(Progress(["a", "b", "c"], desc="it", enabled=True))
    assert items == ["a", "b", "c"]
    assert _counts(out.getvalue()) == [1, 2, 3, 3]  # one line per item, then the final one


def test_leave_false_and_transient_scopes_drop_the_final_line():
    out = io.StringIO()
    with reporting(stream=out, interval=1e9, min_seconds=0):
        Progress(total=3, desc="a", enabled=True, leave=False).close()
        with reporting(transient=True):
            Progress(total=3, desc="b", enabled=True).close()
        Progress(total=3, desc="c", enabled=True).close()
    assert [line.split(":")[0] for line in out.getvalue().splitlines()] == ["c"]


def test_quick_passes_leave_no_trace_but_lines_that_stay_are_written():
    out, term = io.StringIO(), Terminal()
    with reporting(stream=out):  # min_seconds 2 by default
        Progress(total=3, desc="quick", enabled=True, clock=Clock(0.9)).close()  # 0.9 s
        Progress(total=3, desc="slow", enabled=True, clock=Clock(2.0)).close()  # 2 s
        write_line("epoch 1/1: loss 0.5")
    assert [line.split(":")[0] for line in out.getvalue().splitlines()] == ["slow", "epoch 1/1"]
    with reporting(stream=term):
        with Progress(total=3, desc="bar", enabled=True) as bar:
            bar.update(3)
    assert term.getvalue() == ""  # tqdm's delay: no bar for a pass of a few milliseconds


def test_terminal_gets_a_tqdm_bar_and_lines_that_stay():
    out = Terminal()
    with reporting(stream=out, min_seconds=0):
        with Progress(total=5, desc="bar", unit="step", enabled=True) as bar:
            for _ in range(5):
                bar.update(1)
            bar.write("epoch 1/1: loss 0.5")
    text = out.getvalue()
    assert "\r" in text and "bar" in text and "5/5" in text  # tqdm redraws in place
    assert "epoch 1/1: loss 0.5\n" in text


def test_disabled_quiet_and_default_write_nothing():
    out = io.StringIO()
    with reporting(None, stream=out, interval=0, fraction=0):  # the stream, not switched on
        assert list(Progress(range(3), desc="off", enabled=False)) == [0, 1, 2]
        assert list(Progress(range(3), desc="inherited")) == [0, 1, 2]  # scope is off
        write_line("not written")
        previous = set_quiet(True)
        try:
            assert is_quiet()
            assert list(Progress(range(3), desc="quiet", enabled=True)) == [0, 1, 2]
            write_line("not written either", enabled=True)
            with reporting(True):
                assert not progress_enabled(True) and not progress_enabled(None)
        finally:
            set_quiet(previous)
    assert out.getvalue() == ""
    assert not is_quiet()


def test_scopes_nest_and_restore():
    assert not progress_enabled()  # library calls report only when asked
    with reporting(True):
        assert progress_enabled() and not progress_enabled(False)
        with reporting(False):
            assert not progress_enabled() and progress_enabled(True)
        with reporting(None):
            assert progress_enabled()
        assert progress_enabled()
    assert not progress_enabled()


def test_reports_progress_runs_the_call_under_its_progress_argument():
    @reports_progress
    def work(n, *, progress=None):
        return progress_enabled()

    assert work(1, progress=True) and not work(1, progress=False) and not work(1)
    with reporting(True):
        assert work(1) and not work(1, progress=False)
    with pytest.raises(ValueError, match="The 'progress' parameter of .*work must be None or "
                                         "a bool. Got 1 instead"):
        work(1, progress=1)
    with pytest.raises(TypeError, match="no 'progress' parameter"):
        reports_progress(lambda n: n)


@pytest.mark.parametrize("bad", [{"interval": -1}, {"fraction": 2}, {"enabled": "yes"},
                                 {"min_seconds": -1}])
def test_reporting_refuses_bad_settings(bad):
    with pytest.raises(ValueError, match="parameter of reporting"):
        with reporting(**bad):
            pass


def test_formatting_helpers():
    assert [format_duration(s) for s in (4.24, 185, 7384, float("nan"))] == [
        "4.2s", "3m05s", "2h03m", "?"]
    assert format_values({"loss": 0.123456, "epoch": 3, "name": "x"}) == (
        "loss 0.1235  epoch 3  name x")


# ----------------------------------------------------------------------------- fit
def _regression(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(48, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    return [(x[i:i + 8], y[i:i + 8]) for i in range(0, 48, 8)]  # 6 steps per epoch


def _run_fit(progress, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(batch):
        loss = (model(batch[0]) - batch[1]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return fit(step, _regression(), epochs=3, state={"model": model, "opt": opt},
               progress=progress, desc="lin", **kwargs)


def test_fit_writes_one_line_per_epoch_with_the_recorded_values():
    out = io.StringIO()
    with reporting(stream=out):
        history = _run_fit(True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # epochs of ~ms: no step lines, no final line, one line per epoch
    for line, record in zip(lines, history.epochs, strict=True):
        assert line.startswith(f"lin epoch {int(record['epoch'])}/3: loss {record['loss']:.4g}"
                               f"  lr 0.05  (")
    assert [e["lr"] for e in history.epochs] == [0.05, 0.05, 0.05]


def test_fit_step_lines_in_a_log_and_a_bar_on_a_terminal():
    out = io.StringIO()
    with reporting(stream=out, interval=0, fraction=0):
        _run_fit(True)
    steps = [line for line in out.getvalue().splitlines() if "step (" in line]
    assert len(steps) == 3 * 6 and steps[0].startswith("lin 1/3: 1/6 step (17%)")
    term = Terminal()
    with reporting(stream=term, min_seconds=0):
        _run_fit(True)
    assert "\r" in term.getvalue() and term.getvalue().count("lin epoch ") == 3


def test_fit_by_epochs_is_one_bar_over_the_epochs():
    out = io.StringIO()
    with reporting(stream=out, interval=0, fraction=0):
        history = _run_fit(True, progress_by="epochs")
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0].split(" (")[0] for line in lines] == [
        "lin: 1/3 epoch", "lin: 2/3 epoch", "lin: 3/3 epoch", "lin: 3/3 epoch"]
    assert f"loss {history.epochs[-1]['loss']:.4g}" in lines[-1]
    with pytest.raises(ValueError, match="'progress_by' parameter of fit"):
        _run_fit(True, progress_by="batches")


def test_fit_reports_nothing_unless_asked_and_the_reports_change_no_number():
    out = io.StringIO()
    with reporting(None, stream=out, interval=0, fraction=0):
        quiet = _run_fit(None)  # a library call: off by default
        assert out.getvalue() == ""
        shown = _run_fit(True)
    assert out.getvalue() != ""
    assert [e["loss"] for e in quiet.epochs] == [e["loss"] for e in shown.epochs]
