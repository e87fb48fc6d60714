"""The live progress line: counted from pytest's verbose result lines, one line
rewritten on a terminal, plain lines (and every failure) in a log."""
import io

from topologies.report.progress import Progress

LINES = ["created: 2/2 workers\n", "2 workers [4 items]\n",
         "[gw0] [ 25%] PASSED labtests/test_a.py::test_x[1] \n",
         "[gw1] [ 50%] FAILED labtests/test_a.py::test_x[2] \n",
         "[gw0] [ 75%] XFAIL labtests/test_a.py::test_y - known bug\n",
         "[gw1] [100%] PASSED labtests/test_a.py::test_z \n",
         "FAILED labtests/test_a.py::test_x[2] - assert 1 == 2\n"]    # the summary: not counted


class Clock:
    """Seconds that pass only when the test says so."""
    now = 0.0

    def __call__(self):
        return self.now


def feed(progress, clock, lines, every=5.0):
    for line in lines:
        clock.now += every
        progress.feed(line)


def test_a_log_gets_failures_at_once_and_a_line_now_and_then():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, tty=False, clock=clock)
    feed(progress, clock, LINES)
    progress.close()
    assert (progress.total, progress.done, progress.failed) == (4, 4, 1)
    assert out.getvalue().splitlines() == [
        "1/4 tests, 0 failed, 0:15 elapsed, about 0:45 left",          # 15 s since the start
        "FAILED labtests/test_a.py::test_x[2]",                        # at once
        "4/4 tests, 1 failed, 0:35 elapsed, about 0:00 left"]          # close()


def test_a_terminal_gets_one_line_rewritten():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, tty=True, clock=clock)
    feed(progress, clock, LINES[:4])
    assert out.getvalue() == ("\r\033[K1/4 tests, 0 failed, 0:15 elapsed, about 0:45 left"
                              "\r\033[KFAILED labtests/test_a.py::test_x[2]\n"
                              "\r\033[K2/4 tests, 1 failed, 0:20 elapsed, about 0:20 left")
