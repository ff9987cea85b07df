"""The product catalog: which model label is which product.

``catalog.json`` holds ``{"products": [{"label": "apple", "productId": "P001",
"name": "Organic Apples"}, ...]}``. Labels not in the catalog (a hand, say)
are no product and are ignored by the tracker. Several labels may name the
same product (two packagings of one item); each label appears once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ModelError
from agent.paths import DEMO_CATALOG, bundled_models_dir

_FIX = "set model.catalog to a JSON file like models/catalog.json, or leave it empty for the bundled one"


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    label: str


class Catalog:
    def __init__(self, products: Iterable[Product], source: str = "") -> None:
        self.source = source
        self._by_label: dict[str, Product] = {}
        names: dict[str, str] = {}
        for product in products:
            if product.label in self._by_label:
                raise ModelError(f"catalog {source}: label {product.label!r} is listed twice",
                                 fix="give each model label one product")
            if names.setdefault(product.product_id, product.name) != product.name:
                raise ModelError(
                    f"catalog {source}: product {product.product_id} has two names "
                    f"({names[product.product_id]!r} and {product.name!r})",
                    fix="use one name per productId")
            self._by_label[product.label] = product

    @classmethod
    def load(cls, path: Path) -> Catalog:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise ModelError(f"catalog file {path} does not exist", fix=_FIX) from exc
        except IsADirectoryError as exc:
            raise ModelError(f"catalog file {path} is a directory", fix=_FIX) from exc
        except OSError as exc:
            raise ModelError(f"catalog file {path} cannot be read: {exc.strerror or exc}",
                             fix="check the file's permissions") from exc
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"catalog file {path} is not valid JSON: {exc}", fix=_FIX) from exc
        return cls(_parse(data, str(path)), source=str(path))

    @classmethod
    def bundled(cls, models_dir: Path | None = None) -> Catalog:
        """The demo catalog shipped beside the bundled model."""
        return cls.load((models_dir or bundled_models_dir()) / DEMO_CATALOG)

    def lookup(self, label: str) -> Product | None:
        return self._by_label.get(label)

    def labels(self) -> list[str]:
        return list(self._by_label)

    def missing_from(self, model_labels: Iterable[str]) -> list[str]:
        """Catalog labels the model cannot produce (a catalog for another model, say)."""
        known = set(model_labels)
        return [label for label in self._by_label if label not in known]

    def __iter__(self) -> Iterator[Product]:
        return iter(self._by_label.values())

    def __len__(self) -> int:
        return len(self._by_label)


def _parse(data: object, source: str) -> list[Product]:
    if not isinstance(data, Mapping) or not isinstance(data.get("products"), list):
        raise ModelError(f"catalog {source} must be an object with a \"products\" list", fix=_FIX)
    products = []
    for index, entry in enumerate(data["products"]):
        if not isinstance(entry, Mapping):
            raise ModelError(f"catalog {source}: products[{index}] is not an object", fix=_FIX)
        fields = {}
        for key in ("label", "productId", "name"):
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ModelError(
                    f"catalog {source}: products[{index}] needs a non-empty string {key!r}",
                    fix='each product is {"label": ..., "productId": ..., "name": ...}')
            fields[key] = value.strip()
        products.append(Product(fields["productId"], fields["name"], fields["label"]))
    if not products:
        raise ModelError(f"catalog {source} lists no products", fix=_FIX)
    return products
