"""Label files: line i names class id i."""

from __future__ import annotations

import pytest

from agent.detect.labels import load_labels
from agent.errors import ModelError


def test_labels_in_order_trailing_blank_ignored(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("apple\n banana \nmilk\n\n\n", encoding="utf-8")
    assert load_labels(path) == ("apple", "banana", "milk")


def test_missing(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_labels(tmp_path / "labels.txt")


def test_empty(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ModelError, match="is empty"):
        load_labels(path)


def test_blank_inner_line_would_shift_ids(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("apple\n\nmilk\n", encoding="utf-8")
    with pytest.raises(ModelError, match="line 2 is blank"):
        load_labels(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ModelError, match="not UTF-8"):
        load_labels(path)
