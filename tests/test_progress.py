"""The one progress mechanism (``harness.progress``): a line rewritten in place on a terminal,
a few whole lines in a log, never a flood of carriage returns."""

from __future__ import annotations

import io

from harness.progress import StatusLine, bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_whole_lines_at_most_every_interval() -> None:
    log = io.StringIO()
    status = StatusLine(every_s=0.0, log_every_s=3600.0, stream=log)
    for step in range(100):
        status.update(f"step {step}")
    status.close()
    assert log.getvalue() == "step 0\n"  # the first at once, then one an hour
    later = StatusLine(log_every_s=3600.0, first_at_once=False, stream=log)
    later.update("not yet")
    assert log.getvalue() == "step 0\n" and not later.due()


def test_a_terminal_gets_one_line_rewritten_in_place() -> None:
    terminal = Terminal()
    status = StatusLine(every_s=0.0, keep=True, stream=terminal)
    for step in range(3):
        status.update(f"step {step}")
    status.close()
    written = terminal.getvalue()
    assert "step 2" in written and written.count("\n") == 1 and written.endswith("\n")
    assert written.count("\r") >= 3
    cleared = Terminal()
    gone = StatusLine(every_s=0.0, stream=cleared)
    gone.update("step 0")
    gone.close()
    assert "\n" not in cleared.getvalue()  # cleared, not left behind


def test_a_bar_counts_and_is_silent_in_a_log(capsys) -> None:
    assert list(bar(range(5), description="work", unit="job")) == [0, 1, 2, 3, 4]
    counted = bar(total=3, description="work", unit="job")
    counted.update(3)
    counted.close()
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
