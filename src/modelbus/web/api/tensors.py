"""Open Inference Protocol tensors: request bodies in, model inputs out, results back as tensors.

A request (:func:`parse_request`) is the JSON inference request, optionally followed by the
binary tensor data extension (``Inference-Header-Content-Length`` gives the JSON part's
length; an input with ``parameters.binary_data_size`` takes that many bytes, in input order:
numbers little-endian, BYTES elements each a 4-byte little-endian length then the bytes).

Inputs (:func:`model_inputs`):

* one tensor is the model's input, its flat data shaped by ``shape`` (``[]`` is a scalar);
  a one-element BYTES tensor is the input itself: text when its bytes are UTF-8, else
  binary, or as its ``content_type`` parameter says (``text``, ``binary``, ``json``;
  ``base64`` decodes the elements first; MLServer's ``str``, ``bytes`` and ``np`` too);
* when the model's input schema describes a tensor (nested fixed-size arrays of one type)
  and the request tensor has one dimension more, the first dimension is the batch: each row
  is one input and the rows run together (``apply_batch`` when the model has it);
* several tensors, or any when the input schema declares an object, make one JSON object
  by tensor name; a one-element tensor whose property the schema declares as a scalar is
  that scalar.

Results (:func:`output_tensors`): an object is a tensor per key, anything else one tensor
``output``; datatype and shape are inferred (``BOOL``, ``INT64``, ``FP64``, ``BYTES`` for
text and binary); a value that is no tensor (nulls, ragged lists, nested objects) is a
``BYTES`` tensor of its JSON text with ``parameters.content_type = "json"``. A batch stacks
its results along a first dimension.

What modelbus does not support raises :class:`~modelbus.errors.InvalidInput` naming it
(shared memory, sequences, priorities, classification outputs, BF16 binary data...).
"""

from __future__ import annotations

import base64
import json
import math
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelbus.errors import InvalidInput
from modelbus.runtime import jsondoc
from modelbus.runtime.invocation import MAX_TIMEOUT_S, Payload

# Datatypes with a fixed-size binary form: struct codes (little-endian).
_STRUCT = {
    "BOOL": "?",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
BYTES = "BYTES"
DATATYPES = (*_STRUCT, BYTES)
_INT_BITS = {"UINT8": 8, "UINT16": 16, "UINT32": 32, "UINT64": 64}
_INT_BITS |= {"INT8": 8, "INT16": 16, "INT32": 32, "INT64": 64}
_JSON_TYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": BYTES}

_REQUEST_KEYS = {"id", "parameters", "inputs", "outputs"}
_INPUT_KEYS = {"name", "datatype", "shape", "data", "parameters"}
_INPUT_PARAMETERS = {"binary_data_size", "content_type"}
_OUTPUT_PARAMETERS = {"binary_data"}
# An input's content_type parameter (MLServer's names too): what it makes of the tensor
# (None: nothing), and whether it needs a BYTES tensor and one element.
_CONTENT_TYPES: dict[str, tuple[str | None, bool, bool]] = {
    "text": ("text", True, False),
    "str": ("text", True, False),
    "binary": ("binary", True, True),
    "bytes": ("binary", True, True),
    "base64": ("base64", True, False),
    "json": ("json", True, True),
    "np": (None, False, False),
}
# Request parameters modelbus reads itself; the others go to the model as attributes.
_UNSUPPORTED_PARAMETERS = {
    "sequence_id": "sequences (stateful models)",
    "sequence_start": "sequences (stateful models)",
    "sequence_end": "sequences (stateful models)",
    "priority": "request priorities",
    "content_type": "request-level content types (MLServer's pd...): give each input its own",
}
_SHARED_MEMORY = "shared_memory_"
_MICROSECONDS = 1_000_000
# numpy's limit: a shape of thousands of dimensions is no tensor, and would nest the
# model's JSON input that deep.
MAX_DIMS = 32
# A tensor with no elements (a 0 in its shape) still stands for the nested empty lists
# before that 0, which cost memory though the request carries no data for them.
MAX_EMPTY_LISTS = 65_536
JSON_CONTENT = "json"
BASE64_CONTENT = "base64"


@dataclass(frozen=True, slots=True)
class Tensor:
    """One tensor: ``data`` flat in row-major order; BYTES elements are ``str`` (text) or
    ``bytes`` (binary)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool | None


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A parsed inference request. ``outputs`` is ``None`` when the client asked for all."""

    id: str | None
    parameters: dict[str, Any]
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None


# --- request -------------------------------------------------------------------------------


def parse_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parse an inference request (JSON, or JSON plus binary tensor data); raises
    :class:`InvalidInput` naming what is wrong or unsupported."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length {header_length} does not fit a body of "
            f"{len(body)} bytes"
        )
    head, rest = (body, b"") if header_length is None else _split(body, header_length)
    request = _json_object(head)
    _only(request, _REQUEST_KEYS, "the inference request")
    parameters = _parameters(request.get("parameters"), "the request's parameters")
    _check_request_parameters(parameters)
    inputs_json = request.get("inputs")
    if not isinstance(inputs_json, list) or not inputs_json:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    binary = _BinaryReader(rest)
    inputs = [_input(i, spec, binary) for i, spec in enumerate(inputs_json)]
    binary.check_consumed()
    _check_unique([t.name for t in inputs], "input")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    return InferRequest(request_id, parameters, inputs, _requested(request.get("outputs")))


def _split(body: bytes, header_length: int) -> tuple[bytes, bytes]:
    return body[:header_length], body[header_length:]


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        found = jsondoc.loads(data)
    except ValueError as exc:
        raise InvalidInput(f"the inference request is not valid JSON: {exc}") from exc
    if not isinstance(found, dict):
        raise InvalidInput("the inference request must be a JSON object")
    return found


def _only(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InvalidInput(
            f"{where} has members modelbus does not support: {', '.join(unknown)} "
            f"(supported: {', '.join(sorted(allowed))})"
        )


def _parameters(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be an object")
    return value


def _check_request_parameters(parameters: Mapping[str, Any]) -> None:
    for key in parameters:
        if key in _UNSUPPORTED_PARAMETERS:
            raise InvalidInput(
                f"parameter {key!r}: modelbus does not support {_UNSUPPORTED_PARAMETERS[key]}"
            )
        if key.startswith(_SHARED_MEMORY):
            raise InvalidInput(f"parameter {key!r}: modelbus does not support shared memory")
    binary = parameters.get("binary_data_output", False)
    if not isinstance(binary, bool):
        raise InvalidInput("parameter 'binary_data_output' must be true or false")
    timeout = parameters.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)):
        raise InvalidInput("parameter 'timeout' must be an integer (microseconds)")
    if isinstance(timeout, int) and not 0 < timeout <= MAX_TIMEOUT_S * _MICROSECONDS:
        raise InvalidInput(
            "parameter 'timeout' must be positive and at most "
            f"{MAX_TIMEOUT_S * _MICROSECONDS:.0f} (microseconds: {MAX_TIMEOUT_S:g} s)"
        )


def _check_unique(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(f"two {what} tensors are named {name!r}")
        seen.add(name)


def _input(index: int, spec: object, binary: _BinaryReader) -> Tensor:
    where = f"inputs[{index}]"
    if not isinstance(spec, dict):
        raise InvalidInput(f"{where} must be an object")
    _only(spec, _INPUT_KEYS, where)
    name, datatype, shape = _header(spec, where)
    where = f"input {name!r}"
    parameters = _parameters(spec.get("parameters"), f"{where}'s parameters")
    _only(parameters, _INPUT_PARAMETERS, f"{where}'s parameters")
    size = parameters.get("binary_data_size")
    count = math.prod(shape)
    if size is not None:
        if "data" in spec:
            raise InvalidInput(f"{where} has both 'data' and parameters.binary_data_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer")
        data = _from_binary(binary.take(size, where), datatype, count, where)
    elif "data" in spec:
        data = _from_json(spec["data"], datatype, count, where)
    else:
        raise InvalidInput(f"{where} has no 'data' (nor parameters.binary_data_size)")
    _check_finite(data, datatype, where)
    content = _content_type(parameters.get("content_type"), datatype, count, where)
    if content == "base64":
        data = [_unbase64(e, where) for e in data]
        content = "binary" if count == 1 else None
    if content == "text" and any(isinstance(e, bytes) for e in data):
        raise InvalidInput(f"{where}: content_type text, but its bytes are not UTF-8")
    parameters = {k: v for k, v in parameters.items() if k != "content_type"}
    if content is not None:
        parameters["content_type"] = content
    return Tensor(name, datatype, shape, data, parameters)


def _header(spec: Mapping[str, Any], where: str) -> tuple[str, str, tuple[int, ...]]:
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where} needs a 'name'")
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} is not supported by modelbus "
            f"(supported: {', '.join(DATATYPES)})"
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if len(shape) > MAX_DIMS:
        raise InvalidInput(
            f"input {name!r}: a shape of {len(shape)} dimensions; modelbus takes at most {MAX_DIMS}"
        )
    _check_empty_lists(name, shape)
    return name, datatype, tuple(shape)


def _check_empty_lists(name: str, shape: Sequence[int]) -> None:
    """Refuse a shape with a 0 whose dimensions before it make too many empty lists."""
    if 0 not in shape:
        return
    lists = math.prod(shape[: shape.index(0)])
    if lists > MAX_EMPTY_LISTS:
        raise InvalidInput(
            f"input {name!r}: shape {shape} holds no elements but {lists} empty lists: "
            f"give at most {MAX_EMPTY_LISTS} rows before the 0"
        )


def _content_type(value: object, datatype: str, count: int, where: str) -> str | None:
    """What an input's ``content_type`` parameter makes of it: ``text``, ``binary``,
    ``base64``, ``json`` or nothing."""
    if value is None:
        return None
    if not isinstance(value, str) or value not in _CONTENT_TYPES:
        raise InvalidInput(
            f"{where}: content_type {value!r} is not supported "
            f"(supported: {', '.join(_CONTENT_TYPES)})"
        )
    meaning, needs_bytes, needs_one = _CONTENT_TYPES[value]
    if needs_bytes and datatype != BYTES:
        raise InvalidInput(f"{where}: content_type {value!r} applies only to a BYTES tensor")
    if needs_one and count != 1:
        raise InvalidInput(f"{where}: content_type {value!r} applies only to one element")
    return meaning


def _unbase64(element: str | bytes, where: str) -> str | bytes:
    try:
        return _text_or_bytes(base64.b64decode(element, validate=True))
    except ValueError as exc:
        raise InvalidInput(f"{where}: content_type base64, but not base64: {exc}") from exc


def _check_finite(data: list[Any], datatype: str, where: str) -> None:
    # A model's input is JSON, which has no NaN nor infinities.
    if datatype.startswith("FP") and not all(math.isfinite(v) for v in data):
        raise InvalidInput(f"{where}: NaN and infinities cannot be given to a model (JSON input)")


class _BinaryReader:
    """The binary part of a request, handed out in input order."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def take(self, size: int, where: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise InvalidInput(f"{where}: binary_data_size {size} runs past the end of the body")
        chunk, self.offset = self.data[self.offset : end], end
        return chunk

    def check_consumed(self) -> None:
        left = len(self.data) - self.offset
        if left:
            raise InvalidInput(f"{left} bytes of binary data after the inputs belong to no input")


def _from_binary(raw: bytes, datatype: str, count: int, where: str) -> list[Any]:
    if datatype == BYTES:
        return _bytes_elements(raw, count, where)
    code = _STRUCT[datatype]
    expected = count * struct.calcsize(code)
    if len(raw) != expected:
        raise InvalidInput(
            f"{where}: {len(raw)} bytes of binary data for {count} {datatype} elements "
            f"({expected} bytes expected)"
        )
    return list(struct.unpack(f"<{count}{code}", raw))


def _bytes_elements(raw: bytes, count: int, where: str) -> list[Any]:
    elements: list[Any] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"{where}: BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(f"{where}: a BYTES element runs past its binary data")
        elements.append(_text_or_bytes(raw[offset : offset + length]))
        offset += length
    if len(elements) != count:
        raise InvalidInput(f"{where}: {len(elements)} BYTES elements for a shape of {count}")
    return elements


def _text_or_bytes(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _from_json(data: object, datatype: str, count: int, where: str) -> list[Any]:
    flat = _flatten(data)
    if len(flat) != count:
        raise InvalidInput(f"{where}: {len(flat)} elements in 'data' for a shape of {count}")
    for value in flat:
        if not _fits(value, datatype):
            raise InvalidInput(f"{where}: {value!r} is not a {datatype} value")
    return flat


def _flatten(data: object) -> list[Any]:
    # A loop, not recursion: data may be nested as deep as the JSON parser allows.
    flat: list[Any] = []
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def _fits(value: object, datatype: str) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype == BYTES:
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if datatype in _INT_BITS:
        return isinstance(value, int) and _in_range(value, datatype)
    # An integer too large for a float (10**400) is no FP value.
    return isinstance(value, float) or abs(value) <= sys.float_info.max


def _in_range(value: int, datatype: str) -> bool:
    bits = _INT_BITS[datatype]
    if datatype.startswith("U"):
        return 0 <= value < 1 << bits
    half = 1 << (bits - 1)
    return -half <= value < half


def _requested(value: object) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list")
    requested = [_requested_output(i, spec) for i, spec in enumerate(value)]
    _check_unique([r.name for r in requested], "requested output")
    return requested


def _requested_output(index: int, spec: object) -> RequestedOutput:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InvalidInput(f"outputs[{index}] must be an object with a 'name'")
    _only(spec, {"name", "parameters"}, f"outputs[{index}]")
    parameters = _parameters(spec.get("parameters"), f"output {spec['name']!r}'s parameters")
    if "classification" in parameters:
        raise InvalidInput(
            f"output {spec['name']!r}: modelbus does not support the classification extension"
        )
    _only(parameters, _OUTPUT_PARAMETERS, f"output {spec['name']!r}'s parameters")
    binary = parameters.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise InvalidInput(f"output {spec['name']!r}: binary_data must be true or false")
    return RequestedOutput(spec["name"], binary)


# --- model inputs -------------------------------------------------------------------------


def schema_dims(schema: object) -> tuple[tuple[int, ...], str] | None:
    """The shape (``-1`` for a free dimension) and datatype of the tensor a JSON Schema
    describes (nested arrays of one scalar type), or ``None`` when it describes no tensor."""
    dims: list[int] = []
    node = schema
    while isinstance(node, Mapping) and node.get("type") == "array":
        size = node.get("minItems")
        dims.append(size if isinstance(size, int) and size == node.get("maxItems") else -1)
        node = node.get("items")
    if not isinstance(node, Mapping) or node.get("type") not in _JSON_TYPES:
        return None
    return tuple(dims), _JSON_TYPES[node["type"]]


def model_inputs(tensors: Sequence[Tensor], schema: object) -> tuple[list[Payload], bool]:
    """The model's inputs for these request tensors, and whether they are a batch (one
    input per row of the first dimension) rather than one input."""
    if len(tensors) > 1 or (isinstance(schema, Mapping) and schema.get("type") == "object"):
        return [Payload.from_json(_object_of(tensors, schema))], False
    [tensor] = tensors
    if _is_batch(tensor, schema):
        return [Payload.from_json(_json_value(row)) for row in _rows(tensor)], True
    if tensor.datatype == BYTES and len(tensor.data) == 1:
        return [_element_payload(tensor)], False
    return [Payload.from_json(_json_value(tensor))], False


def _is_batch(tensor: Tensor, schema: object) -> bool:
    described = schema_dims(schema)
    if described is None or len(tensor.shape) != len(described[0]) + 1:
        return False
    return all(want in (-1, got) for want, got in zip(described[0], tensor.shape[1:], strict=True))


def _rows(tensor: Tensor) -> list[Tensor]:
    if not tensor.shape[0]:
        raise InvalidInput(f"input {tensor.name!r}: a batch of 0 rows")
    size = math.prod(tensor.shape[1:])
    row_shape = tensor.shape[1:]
    return [
        Tensor(tensor.name, tensor.datatype, row_shape, tensor.data[i * size : (i + 1) * size])
        for i in range(tensor.shape[0])
    ]


def _element_payload(tensor: Tensor) -> Payload:
    [element] = tensor.data
    wanted = tensor.parameters.get("content_type")
    raw = element.encode() if isinstance(element, str) else element
    if wanted == "json":
        return _json_element(tensor.name, raw)
    if wanted == "binary" or (wanted is None and isinstance(element, bytes)):
        return Payload.from_binary(raw)
    if isinstance(element, bytes):
        raise InvalidInput(f"input {tensor.name!r}: content_type 'text' but not UTF-8 bytes")
    return Payload.from_text(element)


def _json_element(name: str, raw: bytes) -> Payload:
    try:
        jsondoc.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"input {name!r}: content_type 'json' but not JSON: {exc}") from exc
    return Payload(raw, "json")


def _object_of(tensors: Sequence[Tensor], schema: object) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    found: dict[str, Any] = {}
    for tensor in tensors:
        prop = properties.get(tensor.name) if isinstance(properties, Mapping) else None
        found[tensor.name] = _property_value(tensor, prop)
    return found


def _property_value(tensor: Tensor, prop: object) -> Any:
    if tensor.parameters.get("content_type") == "json":
        return jsondoc.loads(_json_element(tensor.name, _raw(tensor.data[0])).data)
    described = schema_dims(prop)
    if described is not None and not described[0] and len(tensor.data) == 1:
        return _json_element_value(tensor.name, tensor.data[0])
    return _json_value(tensor)


def _raw(element: str | bytes) -> bytes:
    return element.encode() if isinstance(element, str) else element


def _json_value(tensor: Tensor) -> Any:
    """The tensor's data shaped by its shape, as JSON (BYTES elements as strings)."""
    flat = [_json_element_value(tensor.name, e) for e in tensor.data]
    return _shaped(flat, tensor.shape)


def _json_element_value(name: str, element: Any) -> Any:
    if isinstance(element, bytes):
        raise InvalidInput(
            f"input {name!r}: a BYTES element that is not UTF-8 text can only be the whole "
            "input (a one-element BYTES tensor, the request's only input)"
        )
    return element


def _shaped(flat: list[Any], shape: Sequence[int]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    size = math.prod(shape[1:])
    return [_shaped(flat[i * size : (i + 1) * size], shape[1:]) for i in range(shape[0])]


# --- results ------------------------------------------------------------------------------


def output_tensors(outputs: Sequence[Payload], *, batch: bool) -> list[Tensor]:
    """The response tensors for the model's outputs (one, or one per row of a batch)."""
    values = [output.value() for output in outputs]
    if not batch:
        [value] = values
        if isinstance(value, dict) and value:
            return [_tensor(str(k), v, batch=False) for k, v in value.items()]
        return [_tensor("output", value, batch=False)]
    keys = list(values[0]) if isinstance(values[0], dict) else []
    if keys and all(isinstance(v, dict) and list(v) == keys for v in values):
        return [_tensor(str(k), [v[k] for v in values], batch=True) for k in keys]
    return [_tensor("output", values, batch=True)]


def _tensor(name: str, value: Any, *, batch: bool) -> Tensor:
    rows = value if batch or isinstance(value, list) else [value]
    inferred = _infer(rows)
    if inferred is not None:
        shape, datatype, flat = inferred
        return Tensor(name, datatype, shape, flat)
    if batch:
        return Tensor(name, BYTES, (len(rows),), [_dumps(v) for v in rows], _JSON_PARAMETERS)
    return Tensor(name, BYTES, (1,), [_dumps(value)], _JSON_PARAMETERS)


_JSON_PARAMETERS = {"content_type": JSON_CONTENT}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _infer(rows: list[Any]) -> tuple[tuple[int, ...], str, list[Any]] | None:
    """Shape, datatype and flat data of a rectangular nested list of one scalar type."""
    shape = _dims(rows)
    if shape is None:
        return None
    flat = _flatten(rows) if len(shape) > 1 else list(rows)
    datatype = _datatype(flat)
    return None if datatype is None else (shape, datatype, flat)


def _dims(value: list[Any]) -> tuple[int, ...] | None:
    if not any(isinstance(v, list) for v in value):
        return (len(value),)
    if not all(isinstance(v, list) for v in value):
        return None
    inner = {_dims(v) for v in value}
    if len(inner) != 1 or None in inner:
        return None
    [sub] = inner
    assert sub is not None
    return (len(value), *sub)


def _datatype(flat: list[Any]) -> str | None:
    if all(isinstance(v, bool) for v in flat):
        return "BOOL" if flat else BYTES
    if any(isinstance(v, bool) for v in flat):
        return None
    if all(isinstance(v, int) for v in flat):
        return "INT64" if all(_in_range(v, "INT64") for v in flat) else None
    if all(isinstance(v, int | float) for v in flat):
        return "FP64"
    if all(isinstance(v, str | bytes) for v in flat):
        return BYTES
    return None


# --- response -----------------------------------------------------------------------------


def tensor_json(tensor: Tensor, *, binary: bool) -> tuple[dict[str, Any], bytes]:
    """A response output as JSON, and its binary data (empty unless ``binary``)."""
    found: dict[str, Any] = {
        "name": tensor.name,
        "datatype": tensor.datatype,
        "shape": list(tensor.shape),
    }
    parameters = dict(tensor.parameters)
    raw = b""
    if binary:
        raw = pack(tensor)
        parameters["binary_data_size"] = len(raw)
    elif any(isinstance(e, bytes) for e in tensor.data):
        found["data"] = [base64.b64encode(_raw(e)).decode("ascii") for e in tensor.data]
        parameters["content_type"] = BASE64_CONTENT
    else:
        found["data"] = tensor.data
    if parameters:
        found["parameters"] = parameters
    return found, raw


def pack(tensor: Tensor) -> bytes:
    """The tensor's data in the binary tensor data extension's form."""
    if tensor.datatype == BYTES:
        return b"".join(struct.pack("<I", len(_raw(e))) + _raw(e) for e in tensor.data)
    return struct.pack(f"<{len(tensor.data)}{_STRUCT[tensor.datatype]}", *tensor.data)


# --- metadata -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A tensor as model metadata describes it (``-1``: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def schema_tensors(schema: object, *, name: str, batch: bool) -> list[TensorInfo]:
    """The tensors a model's input or output JSON Schema stands for: one per declared
    property of an object, else one tensor ``name``; none without a schema. ``batch`` puts a ``-1``
    batch dimension first (outputs; and inputs that describe one tensor)."""
    if not isinstance(schema, Mapping):
        return []
    if schema.get("type") == "object":
        # An object without declared properties: its tensors are not known in advance.
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return []
        lead = (-1,) if batch else ()
        return [_info(str(k), prop, lead) for k, prop in properties.items()]
    return [_info(name, schema, (-1,))]


def _info(name: str, schema: object, lead: tuple[int, ...]) -> TensorInfo:
    described = schema_dims(schema)
    if described is None:
        return TensorInfo(name, BYTES, lead or (1,))
    dims, datatype = described
    shape = (*lead, *dims)
    return TensorInfo(name, datatype, shape or (1,))
