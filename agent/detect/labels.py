"""The label file: one label per line, line i names class id i."""

from __future__ import annotations

from pathlib import Path

from agent.errors import ModelError


def load_labels(path: Path) -> tuple[str, ...]:
    """Labels in class-id order; blank trailing lines are ignored, blank inner lines are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"label file {path} does not exist",
                         fix="set model.labels to a text file with one label per line") from None
    except UnicodeDecodeError as exc:
        raise ModelError(f"label file {path} is not UTF-8 text") from exc
    except OSError as exc:
        raise ModelError(f"label file {path} cannot be read: {exc.strerror}") from exc
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ModelError(f"label file {path} is empty", fix="write one label per line")
    for number, line in enumerate(lines, start=1):
        if not line:
            raise ModelError(f"label file {path} line {number} is blank",
                             fix="line i names class id i; remove the blank line")
    return tuple(lines)
