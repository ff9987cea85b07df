"""What a .tflite file is, read from its bytes before any interpreter sees it.

A TFLite model is a FlatBuffer with the file identifier ``TFL3``. Reading the
operator codes tells an Edge TPU-compiled model (its graph is one
``edgetpu-custom-op``) from a CPU model, and lets a truncated or foreign file
fail with a clear message instead of inside the interpreter.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ModelError

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
POSTPROCESS_OP = "TFLite_Detection_PostProcess"
_IDENTIFIER = b"TFL3"
# Model table fields (schema.fbs): 0 version, 1 operator_codes, 2 subgraphs.
_MODEL_OPERATOR_CODES = 1
_MODEL_SUBGRAPHS = 2
# OperatorCode table fields: 0 deprecated_builtin_code, 1 custom_code.
_OPCODE_CUSTOM_CODE = 1
# SubGraph field 3 operators; Operator fields 0 opcode_index, 5 custom_options.
_SUBGRAPH_OPERATORS = 3
_OPERATOR_OPCODE_INDEX = 0
_OPERATOR_CUSTOM_OPTIONS = 5


@dataclass(frozen=True)
class ModelFile:
    path: Path
    size: int
    custom_ops: tuple[str, ...]
    # num_classes of the SSD post-process op, when the model has one (it excludes background).
    postprocess_classes: int | None = None

    @property
    def edgetpu_compiled(self) -> bool:
        return EDGETPU_CUSTOM_OP in self.custom_ops


class _Reader:
    """Bounds-checked FlatBuffer reads; any offset outside the file means it is damaged."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _unpack(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise IndexError(pos)
        return struct.unpack_from(fmt, self.data, pos)[0]

    def u32(self, pos: int) -> int:
        return self._unpack("<I", pos)

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of a table field, or None when it is absent."""
        vtable = table - self._unpack("<i", table)
        vtable_size = self._unpack("<H", vtable)
        slot = 4 + 2 * index
        if slot + 2 > vtable_size:
            return None
        offset = self._unpack("<H", vtable + slot)
        return table + offset if offset else None

    def indirect(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, pos: int) -> list[int]:
        """Positions of a vector's elements when they are offsets to tables or strings."""
        start = self.indirect(pos)
        length = self.u32(start)
        if start + 4 + 4 * length > len(self.data):
            raise IndexError(start)
        return [self.indirect(start + 4 + 4 * i) for i in range(length)]

    def bytes_vector(self, pos: int) -> bytes:
        start = self.indirect(pos)
        length = self.u32(start)
        if start + 4 + length > len(self.data):
            raise IndexError(start)
        return self.data[start + 4:start + 4 + length]

    def string(self, pos: int) -> str:
        start = self.indirect(pos)
        length = self.u32(start)
        if start + 4 + length > len(self.data):
            raise IndexError(start)
        return self.data[start + 4:start + 4 + length].decode("utf-8", "replace")


def read_model_file(path: Path) -> ModelFile:
    """Check a model file is a whole TFLite model and list its custom ops; ModelError if not."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"model file {path} does not exist",
                         fix="set model.path to a .tflite file, or leave it empty for the bundled model"
                         ) from None
    except IsADirectoryError:
        raise ModelError(f"model file {path} is a directory", fix="name a .tflite file") from None
    except OSError as exc:
        raise ModelError(f"model file {path} cannot be read: {exc.strerror}",
                         fix="check the file's permissions") from exc
    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        raise ModelError(f"model file {path} is not a TFLite model (no TFL3 identifier)",
                         fix="use a .tflite file exported by the TFLite converter")
    reader = _Reader(data)
    try:
        root = reader.indirect(0)
        subgraphs = reader.field(root, _MODEL_SUBGRAPHS)
        if subgraphs is None or not reader.vector(subgraphs):
            raise IndexError("no subgraphs")
        custom: list[str] = []
        postprocess_codes: set[int] = set()
        codes = reader.field(root, _MODEL_OPERATOR_CODES)
        for number, table in enumerate(reader.vector(codes) if codes is not None else []):
            name = reader.field(table, _OPCODE_CUSTOM_CODE)
            if name is not None:
                custom.append(reader.string(name))
                if custom[-1] == POSTPROCESS_OP:
                    postprocess_codes.add(number)
        classes = _postprocess_classes(reader, reader.vector(subgraphs)[0], postprocess_codes)
    except (IndexError, struct.error):
        raise ModelError(f"model file {path} is truncated or damaged ({len(data)} bytes)",
                         fix="copy the model again; its size should match the original") from None
    return ModelFile(path=path, size=len(data), custom_ops=tuple(custom),
                     postprocess_classes=classes)


def _postprocess_classes(reader: _Reader, subgraph: int, codes: set[int]) -> int | None:
    """num_classes from the post-process op's options (a FlexBuffer map), if readable."""
    if not codes:
        return None
    try:
        from flatbuffers import flexbuffers  # ships with ai-edge-litert; optional otherwise
    except ImportError:
        return None
    operators = reader.field(subgraph, _SUBGRAPH_OPERATORS)
    for op in reader.vector(operators) if operators is not None else []:
        index = reader.field(op, _OPERATOR_OPCODE_INDEX)
        # A field holding its default (0) is left out of the buffer.
        if (0 if index is None else reader.u32(index)) not in codes:
            continue
        options = reader.field(op, _OPERATOR_CUSTOM_OPTIONS)
        if options is None:
            return None
        try:
            value = flexbuffers.Loads(reader.bytes_vector(options)).get("num_classes")
        except Exception:  # noqa: BLE001 - foreign options: the check is skipped, not the model
            return None
        return int(value) if isinstance(value, (int, float)) else None
    return None
