"""Catalog loading and lookups, from real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.basket.catalog import Catalog, Product
from agent.errors import ModelError

GOOD = {"products": [
    {"label": "apple", "productId": "P001", "name": "Organic Apples"},
    {"label": "milk", "productId": "P003", "name": "Whole Milk 1 L"},
]}


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_lookup_maps_labels_to_products(tmp_path: Path) -> None:
    catalog = Catalog.load(write(tmp_path / "catalog.json", GOOD))
    assert catalog.lookup("apple") == Product("P001", "Organic Apples", "apple")
    assert catalog.lookup("milk") == Product("P003", "Whole Milk 1 L", "milk")
    assert len(catalog) == 2
    assert catalog.labels() == ["apple", "milk"]


def test_unknown_labels_are_no_product(tmp_path: Path) -> None:
    catalog = Catalog.load(write(tmp_path / "catalog.json", GOOD))
    assert catalog.lookup("hand") is None
    assert catalog.lookup("") is None
    assert catalog.lookup("Apple") is None


def test_two_labels_may_name_one_product(tmp_path: Path) -> None:
    data = {"products": [
        {"label": "cola_can", "productId": "P9", "name": "Cola"},
        {"label": "cola_bottle", "productId": "P9", "name": "Cola"},
    ]}
    catalog = Catalog.load(write(tmp_path / "c.json", data))
    assert catalog.lookup("cola_can").product_id == catalog.lookup("cola_bottle").product_id


def test_bundled_catalog_covers_the_bundled_labels(repo_root: Path) -> None:
    catalog = Catalog.bundled()
    labels = (repo_root / "models" / "labels.txt").read_text().split()
    assert catalog.missing_from(labels) == []
    assert all(catalog.lookup(label) is not None for label in labels)
    assert catalog.lookup("apple").product_id == "P001"


def test_bundled_reads_the_given_models_dir(tmp_path: Path) -> None:
    write(tmp_path / "catalog.json", GOOD)
    assert Catalog.bundled(tmp_path).source == str(tmp_path / "catalog.json")


def test_missing_from_names_labels_the_model_lacks(tmp_path: Path) -> None:
    catalog = Catalog.load(write(tmp_path / "c.json", GOOD))
    assert catalog.missing_from(["apple", "banana"]) == ["milk"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist") as info:
        Catalog.load(tmp_path / "nope.json")
    assert info.value.exit_code == 2 and info.value.fix


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a directory"):
        Catalog.load(tmp_path)


def test_unreadable_path(tmp_path: Path) -> None:
    # A file used as a directory: an OSError other than "missing" (ENOTDIR).
    path = write(tmp_path / "c.json", GOOD) / "catalog.json"
    with pytest.raises(ModelError, match="cannot be read"):
        Catalog.load(path)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    ("[]", "must be an object"),
    ('{"items": []}', "must be an object"),
    ('{"products": {}}', "must be an object"),
    ('{"products": []}', "lists no products"),
    ('{"products": ["apple"]}', r"products\[0\] is not an object"),
    ('{"products": [{"label": "apple", "productId": "P1"}]}', "non-empty string 'name'"),
    ('{"products": [{"label": "", "productId": "P1", "name": "A"}]}', "non-empty string 'label'"),
    ('{"products": [{"label": "a", "productId": 7, "name": "A"}]}', "non-empty string 'productId'"),
])
def test_damaged_catalogs_are_model_errors(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ModelError, match=message) as info:
        Catalog.load(path)
    assert str(path) in str(info.value)


def test_duplicate_label_is_refused(tmp_path: Path) -> None:
    data = {"products": GOOD["products"] + [{"label": "apple", "productId": "P7", "name": "X"}]}
    with pytest.raises(ModelError, match="listed twice"):
        Catalog.load(write(tmp_path / "c.json", data))


def test_one_product_with_two_names_is_refused(tmp_path: Path) -> None:
    data = {"products": GOOD["products"] + [{"label": "pear", "productId": "P001", "name": "X"}]}
    with pytest.raises(ModelError, match="two names"):
        Catalog.load(write(tmp_path / "c.json", data))
