"""Log formats, captured from real streams."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from agent.errors import ConfigError
from agent.logs import configure_logging, is_journal_stream, resolve_format

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    logging.captureWarnings(False)


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def emit_sample(name: str = "agent.sample") -> None:
    log = structlog.get_logger(name)
    log.debug("debug detail", step=1)
    log.info("product added", product_id="P001", name="Organic Apples", quantity=2)
    log.warning("edge tpu missing", fallback="cpu")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("send failed", attempt=3)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_journal_format_has_priority_prefixes_and_no_timestamp() -> None:
    out = io.StringIO()
    configure_logging("debug", "journal", stream=out)
    emit_sample()
    got = lines(out)
    assert [line[:3] for line in got] == ["<7>", "<6>", "<4>", "<3>"]
    assert got[1] == '<6>agent.sample: product added product_id=P001 name="Organic Apples" quantity=2'
    assert not any(re.search(r"\d\d:\d\d:\d\d", line) for line in got)


def test_journal_format_folds_a_traceback_onto_one_line() -> None:
    out = io.StringIO()
    configure_logging("info", "journal", stream=out)
    emit_sample()
    last = lines(out)[-1]
    assert last.startswith("<3>agent.sample: send failed attempt=3 | Traceback (most recent call last):")
    assert " | ValueError: boom" in last
    assert len(lines(out)) == 3  # info, warning, error: the traceback added no lines


def test_multi_line_messages_and_values_stay_on_one_line() -> None:
    out = io.StringIO()
    configure_logging("info", "journal", stream=out)
    structlog.get_logger("agent.x").error("first\nsecond", body="line one\nline two")
    assert lines(out) == ['<3>agent.x: first | second body="line one\\nline two"']


def test_plain_format_has_a_utc_timestamp_and_key_values() -> None:
    out = io.StringIO()
    configure_logging("info", "plain", stream=out)
    emit_sample()
    got = lines(out)
    assert len(got) == 3
    assert re.fullmatch(ISO + r" info    agent\.sample: product added product_id=P001 "
                        r'name="Organic Apples" quantity=2', got[0])
    assert re.match(ISO + r" error   agent\.sample: send failed attempt=3 \| Traceback", got[2])


def test_json_format_is_one_object_per_line() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    emit_sample()
    records = [json.loads(line) for line in lines(out)]
    assert [r["level"] for r in records] == ["info", "warning", "error"]
    assert records[0]["event"] == "product added"
    assert records[0]["quantity"] == 2
    assert records[0]["logger"] == "agent.sample"
    assert re.fullmatch(ISO, records[0]["timestamp"])
    assert "ValueError: boom" in records[2]["exception"]


def test_console_format_is_readable_and_colours_only_on_a_tty() -> None:
    plain_out = io.StringIO()
    configure_logging("info", "console", stream=plain_out)
    structlog.get_logger("agent.c").info("hello", n=1)
    assert "hello" in plain_out.getvalue() and "n=1" in plain_out.getvalue()
    assert "\x1b[" not in plain_out.getvalue()

    tty_out = TtyStream()
    configure_logging("info", "console", stream=tty_out)
    structlog.get_logger("agent.c").info("hello", n=1)
    assert "\x1b[" in tty_out.getvalue()


@pytest.mark.parametrize("level, shown", [
    ("debug", ["<7>", "<6>", "<4>", "<3>"]),
    ("info", ["<6>", "<4>", "<3>"]),
    ("warning", ["<4>", "<3>"]),
    ("error", ["<3>"]),
])
def test_level_filtering(level: str, shown: list[str]) -> None:
    out = io.StringIO()
    configure_logging(level, "journal", stream=out)
    emit_sample()
    assert [line[:3] for line in lines(out)] == shown


def test_stdlib_records_use_the_same_format_from_warning_up() -> None:
    out = io.StringIO()
    configure_logging("debug", "journal", stream=out)
    library = logging.getLogger("urllib3.connectionpool")
    library.debug("Starting new HTTP connection (%d): %s", 1, "localhost")
    library.info("chatty")
    library.warning("Retrying (%s) after connection broken", "Retry(total=2)")
    try:
        raise OSError("reset")
    except OSError:
        library.error("gave up", exc_info=True)
    got = lines(out)
    assert got[0] == "<4>urllib3.connectionpool: Retrying (Retry(total=2)) after connection broken"
    assert got[1].startswith("<3>urllib3.connectionpool: gave up | Traceback")
    assert got[1].endswith("OSError: reset")
    assert len(got) == 2


def test_python_warnings_are_logged() -> None:
    out = io.StringIO()
    configure_logging("info", "journal", stream=out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old api", DeprecationWarning, stacklevel=1)
    assert lines(out)[0].startswith("<4>py.warnings:")
    assert "old api" in lines(out)[0]


@pytest.mark.parametrize("fmt", ["journal", "plain", "json"])
def test_secrets_are_dropped(fmt: str) -> None:
    out = io.StringIO()
    configure_logging("info", fmt, stream=out)
    structlog.get_logger("agent.s").info(
        "registered", device_id="dev-1", token="tok-123", Authorization="Bearer abc",
        api_key="k-9", password="hunter2")
    text = out.getvalue()
    assert "dev-1" in text
    for secret in ("tok-123", "Bearer abc", "k-9", "hunter2"):
        assert secret not in text


def test_auto_picks_journal_when_journal_stream_matches_the_output(tmp_path: Path) -> None:
    path = tmp_path / "journal-socket-stand-in.log"
    with path.open("w") as handle:
        info = os.fstat(handle.fileno())
        configure_logging("info", "auto", journal_stream=f"{info.st_dev}:{info.st_ino}",
                          stream=handle)
        structlog.get_logger("agent.j").warning("camera reopened", attempt=2)
    assert path.read_text().splitlines() == ["<4>agent.j: camera reopened attempt=2"]


def test_auto_ignores_a_journal_stream_naming_another_file(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_text("")
    other_info = os.stat(other)
    path = tmp_path / "out.log"
    with path.open("w") as handle:
        configure_logging("info", "auto", journal_stream=f"{other_info.st_dev}:{other_info.st_ino}",
                          stream=handle)
        structlog.get_logger("agent.j").info("started")
    assert re.fullmatch(ISO + r" info    agent\.j: started", path.read_text().strip())


def test_auto_is_console_on_a_tty_and_plain_otherwise() -> None:
    assert resolve_format("auto", TtyStream(), None) == "console"
    assert resolve_format("auto", io.StringIO(), None) == "plain"
    assert resolve_format("json", TtyStream(), None) == "json"


@pytest.mark.parametrize("value", ["", "garbage", "1:", "a:b", "12"])
def test_malformed_journal_stream_is_not_a_match(tmp_path: Path, value: str) -> None:
    with (tmp_path / "f").open("w") as handle:
        assert is_journal_stream(handle, value) is False
    assert is_journal_stream(io.StringIO(), "1:2") is False


def test_reconfiguring_replaces_the_previous_setup() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "journal", stream=first)
    log = structlog.get_logger("agent.r")  # module-level loggers are made before configure
    log.info("one")
    configure_logging("debug", "plain", stream=second)
    log.debug("two")
    assert lines(first) == ["<6>agent.r: one"]
    assert len(lines(second)) == 1 and lines(second)[0].endswith("debug   agent.r: two")
    assert len(logging.getLogger().handlers) == 1


@pytest.mark.parametrize("level, fmt", [("verbose", "plain"), ("info", "xml")])
def test_bad_level_or_format_is_a_config_error(level: str, fmt: str) -> None:
    with pytest.raises(ConfigError) as info:
        configure_logging(level, fmt, stream=io.StringIO())
    assert info.value.exit_code == 2
    assert info.value.fix


def test_default_stream_follows_sys_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "plain")
    structlog.get_logger("agent.d").info("first")
    assert "agent.d: first" in capsys.readouterr().err
    # The harness swaps sys.stderr between tests; records must follow it, not the old one.
    swapped = io.StringIO()
    original = sys.stderr
    sys.stderr = swapped
    try:
        structlog.get_logger("agent.d").warning("second")
    finally:
        sys.stderr = original
    assert swapped.getvalue().endswith("warning agent.d: second\n")
