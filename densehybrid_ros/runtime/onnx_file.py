"""What an ONNX file refers to outside itself, read from its protobuf wire format (the `onnx` package is a training
dependency only; a vehicle runs with onnxruntime alone).

A tensor stored as external data lives in another file named by the model; a model card's sha256 covers the .onnx
file alone, so such weights would be loaded unchecked. Worse, a model given to ONNX Runtime as bytes resolves those
names against the working directory.
"""
from __future__ import annotations

# Field numbers of onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto, FunctionProto,
# SparseTensorProto) whose values are messages that can hold tensors: field -> message kind.
_MESSAGE_FIELDS: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "function": {7: "node"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 13, 14, 1
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview, start: int, end: int):
    """(field number, varint value or (start, end) of a length-delimited value) for each field of one message."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield field, value
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > end:
                raise ValueError("field runs past its message")
            yield field, (i, i + n)
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if i != end:
        raise ValueError("message ends inside a field")


def _tensor_location(buf: memoryview, start: int, end: int) -> str | None:
    external, location = False, None
    for field, value in _fields(buf, start, end):
        if field == _TENSOR_DATA_LOCATION and value == _EXTERNAL:
            external = True
        elif field == _TENSOR_EXTERNAL_DATA and isinstance(value, tuple):
            external = True
            entry = dict(_fields(buf, *value))
            if entry.get(_ENTRY_KEY) and bytes(buf[slice(*entry[_ENTRY_KEY])]) == b"location" \
                    and isinstance(entry.get(_ENTRY_VALUE), tuple):
                location = bytes(buf[slice(*entry[_ENTRY_VALUE])]).decode("utf-8", "replace")
    return (location or "<unnamed>") if external else None


def external_data_files(model: bytes) -> list[str]:
    """The external data files the tensors of this serialised ModelProto name (sorted, unique); [] when none or
    when the bytes are not a parseable model (the runtime then reports its own error)."""
    buf = memoryview(model)
    found: set[str] = set()
    stack = [("model", 0, len(buf))]
    try:
        while stack:
            kind, start, end = stack.pop()
            if kind == "tensor":
                location = _tensor_location(buf, start, end)
                if location is not None:
                    found.add(location)
                continue
            children = _MESSAGE_FIELDS[kind]
            for field, value in _fields(buf, start, end):
                if field in children and isinstance(value, tuple):
                    stack.append((children[field], *value))
    except (ValueError, IndexError):
        return sorted(found)
    return sorted(found)
