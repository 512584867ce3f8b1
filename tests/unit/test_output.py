"""fake.output: levels, masking, the transcript, colour only where it belongs."""

import io

import pytest

from fake.output import NORMAL, QUIET, VERBOSE, Console, Transcript


def console(level=NORMAL, color=False, transcript=None):
    out, err = io.StringIO(), io.StringIO()
    return Console(out=out, err=err, level=level, color=color, transcript=transcript), out, err


@pytest.mark.parametrize("level, shown", [
    (QUIET, ["quiet"]),
    (NORMAL, ["quiet", "normal"]),
    (VERBOSE, ["quiet", "normal", "verbose"]),
])
def test_levels_decide_what_reaches_the_screen(level, shown):
    con, out, _ = console(level)
    con.write("quiet", level=QUIET)
    con.write("normal", level=NORMAL)
    con.write("verbose", level=VERBOSE)
    assert out.getvalue().split() == shown


def test_secrets_are_masked_longest_first_and_short_values_ignored():
    con, out, _ = console()
    con.add_secret("pa55")
    con.add_secret("pa55word-long")
    con.add_secret("ab")  # too short to mask without mangling ordinary text
    con.write("login pa55word-long then pa55 and ab")
    assert out.getvalue() == "login ******** then ******** and ab\n"


def test_transcript_gets_everything_masked_and_without_colour(tmp_path):
    path = tmp_path / "log" / "fake.log"
    con, out, _ = console(level=QUIET, color=True)
    con.transcript = Transcript(str(path), con.mask)
    con.add_secret("s3cret")
    con.write("hidden from the screen, token s3cret", level=NORMAL)
    con.fail("failed with s3cret")
    con.transcript.command("web1", "echo s3cret\nexit 3", 3, 0.25, "s3cret out", "err line")
    con.close()
    log = path.read_text()
    assert "s3cret" not in log and "\033[" not in log
    assert "hidden from the screen, token ********" in log
    assert "[web1] $ echo ********" in log and "[web1] exit 3 in 0.250s" in log
    assert "[web1] | ******** out" in log and "[web1] ! err line" in log
    assert out.getvalue() == ""  # quiet: nothing on stdout; failures go to stderr


def test_colour_only_when_asked_and_host_prefixes_painted():
    plain, out, _ = console(color=False)
    plain.host_lines("web1", ["hello"])
    assert out.getvalue() == "[web1] hello\n"
    coloured, out, _ = console(color=True)
    coloured.host_lines("web1", ["hello"])
    assert out.getvalue() == "\033[36m[web1]\033[0m hello\n"


def test_no_color_environment_turns_colour_off_even_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("NO_COLOR", "1")
    assert Console(out=Tty()).color is False
    monkeypatch.delenv("NO_COLOR")
    assert Console(out=Tty()).color is True
    assert Console(out=io.StringIO()).color is False  # piped


def test_spinner_only_on_a_terminal():
    con, out, _ = console()
    with con.spin("updating"):
        pass
    assert out.getvalue() == ""  # not a tty: no spinner frames, no control codes


def test_two_threads_printing_at_once_never_share_a_line():
    import io
    import threading

    from fake.streams import LineStream

    real = io.StringIO()
    stream = LineStream(real)
    first_wrote, second_wrote = threading.Event(), threading.Event()

    def host_a():
        stream.write("build a")
        first_wrote.set()
        second_wrote.wait(5)
        stream.write("\n")

    def host_b():
        first_wrote.wait(5)
        stream.write("build b")  # print()'s text lands between the other's text and newline
        second_wrote.set()
        stream.write("\n")

    threads = [threading.Thread(target=host_a), threading.Thread(target=host_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(real.getvalue().splitlines()) == ["build a", "build b"], real.getvalue()


def test_an_unfinished_line_goes_out_on_flush_and_when_the_run_ends():
    import io
    import sys

    from fake.streams import LineStream, whole_lines

    real = io.StringIO()
    stream = LineStream(real)
    stream.write("50%")
    assert real.getvalue() == ""
    stream.flush()
    assert real.getvalue() == "50%"
    saved = sys.stdout
    sys.stdout = real
    try:
        with whole_lines():
            print("no newline", end="")
    finally:
        sys.stdout = saved
    assert real.getvalue() == "50%no newline"
