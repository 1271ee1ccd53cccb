"""The Open Inference Protocol's tensors without a server: requests parsed (JSON and the
binary tensor data extension), tensors made into model inputs, results made into tensors."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest

from modelbus.errors import InvalidInput
from modelbus.runtime.invocation import Payload
from modelbus.web.api.tensors import (
    Tensor,
    TensorInfo,
    model_inputs,
    output_tensors,
    pack,
    parse_request,
    schema_tensors,
    tensor_json,
)

DIGITS = {"type": "array", "items": {"type": "number"}, "minItems": 64, "maxItems": 64}
STRICT = {"type": "object", "properties": {"text": {"type": "string"}, "n": {"type": "integer"}}}


def request(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def tensor(
    name: str, datatype: str, shape: list[int], data: Any, **parameters: Any
) -> dict[str, Any]:
    found = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    return {**found, "parameters": parameters} if parameters else found


def inputs_of(
    body: bytes, schema: object = None, header: int | None = None
) -> tuple[list[Any], bool]:
    payloads, batch = model_inputs(parse_request(body, header).inputs, schema)
    return [(p.content_type, p.value()) for p in payloads], batch


def test_a_tensor_is_its_data_shaped_nested_or_flat() -> None:
    flat = request(tensor("m", "INT32", [2, 3], [1, 2, 3, 4, 5, 6]))
    nested = request(tensor("m", "INT32", [2, 3], [[1, 2, 3], [4, 5, 6]]))
    scalar = request(tensor("x", "FP32", [], [0.5]))
    assert inputs_of(flat) == inputs_of(nested) == ([("json", [[1, 2, 3], [4, 5, 6]])], False)
    assert inputs_of(scalar) == ([("json", 0.5)], False)


def test_rows_are_a_batch_when_the_schema_describes_one_row() -> None:
    rows = request(tensor("input", "FP32", [2, 64], [0.0] * 64 + [1.0] * 64))
    one = request(tensor("input", "FP32", [64], [0.0] * 64))
    assert inputs_of(rows, DIGITS) == ([("json", [0.0] * 64), ("json", [1.0] * 64)], True)
    assert inputs_of(rows) == ([("json", [[0.0] * 64, [1.0] * 64])], False)  # no schema
    assert inputs_of(one, DIGITS) == ([("json", [0.0] * 64)], False)


def test_a_one_element_bytes_tensor_is_text_binary_or_json() -> None:
    assert inputs_of(request(tensor("t", "BYTES", [1], ["Ada"]))) == ([("text", "Ada")], False)
    as_json = request(tensor("t", "BYTES", [1], ['{"a": 1}'], content_type="json"))
    assert inputs_of(as_json) == ([("json", {"a": 1})], False)
    b64 = base64.b64encode(b"\x89PNG").decode()
    assert inputs_of(request(tensor("t", "BYTES", [1], [b64], content_type="base64"))) == (
        [("binary", b"\x89PNG")],
        False,
    )
    forced = request(tensor("t", "BYTES", [1], ["Ada"], content_type="bytes"))
    assert inputs_of(forced) == ([("binary", b"Ada")], False)


def test_binary_tensor_data_is_read_in_input_order() -> None:
    head = request(
        {"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
        {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 10}},
    )
    body = (
        head
        + struct.pack("<2f", 1.5, -2.0)
        + struct.pack("<I", 1)
        + b"a"
        + struct.pack("<I", 1)
        + b"b"
    )
    parsed = parse_request(body, len(head))
    assert [t.data for t in parsed.inputs] == [[1.5, -2.0], ["a", "b"]]
    assert inputs_of(body, header=len(head)) == (
        [("json", {"x": [1.5, -2.0], "s": ["a", "b"]})],
        False,
    )
    raw = (
        head.replace(b"10", b"11")
        + struct.pack("<2f", 1, 2)
        + struct.pack("<I", 2)
        + b"\xff\xfe"
        + struct.pack("<I", 1)
        + b"b"
    )
    with pytest.raises(InvalidInput, match="not UTF-8 text can only be the whole input"):
        inputs_of(raw, header=len(head))


def test_several_tensors_make_an_object_with_the_schemas_scalars() -> None:
    body = request(tensor("text", "BYTES", [1], ["abc"]), tensor("n", "INT64", [1], [3]))
    assert inputs_of(body, STRICT) == ([("json", {"text": "abc", "n": 3})], False)
    assert inputs_of(body) == ([("json", {"text": ["abc"], "n": [3]})], False)
    lone = request(tensor("text", "BYTES", [1], ["abc"]))
    assert inputs_of(lone, STRICT) == ([("json", {"text": "abc"})], False)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (request(tensor("a", "BF16", [1], [1.0])), "BF16"),
        (request(tensor("a", "FP32", [2], [1.0])), "1 elements"),
        (request(tensor("a", "UINT8", [1], [-1])), "UINT8"),
        (request(tensor("a", "BOOL", [1], [1])), "BOOL"),
        (request(tensor("a", "INT64", [1], [1.5])), "INT64"),
        (request(tensor("a", "BYTES", [1], [1])), "BYTES"),
        (request(tensor("a", "FP32", [1], [1.0], content_type="json")), "BYTES tensor"),
        (request(tensor("a", "BYTES", [2], ["x", "y"], content_type="json")), "one element"),
        (request(tensor("a", "BYTES", [1], ["*"], content_type="base64")), "base64"),
        (
            request(tensor("a", "FP32", [1], [1.0], shared_memory_region="r")),
            "shared_memory_region",
        ),
        (request(tensor("a", "FP32", [1], [1.0]), tensor("a", "FP32", [1], [1.0])), "two input"),
        (request(tensor("a", "FP32", [-1], [1.0])), "non-negative"),
        (request(tensor("a", "FP32", [1], [1.0]), parameters={"priority": 1}), "priorit"),
        (request(tensor("a", "FP32", [1], [1.0]), parameters={"content_type": "pd"}), "each input"),
        (request(tensor("a", "FP32", [1], [1.0]), parameters={"timeout": "5"}), "microseconds"),
        (request(tensor("a", "FP32", [1], [1.0]), model="x"), "model"),
        (b'{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1], "data": [NaN]}]}', "NaN"),
        (b"[]", "JSON object"),
    ],
)
def test_what_is_wrong_or_unsupported_is_named(body: bytes, named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        model_inputs(parse_request(body, None).inputs, None)


def test_header_length_must_fit_the_body() -> None:
    body = request(tensor("a", "FP32", [1], [1.0]))
    with pytest.raises(InvalidInput, match="does not fit"):
        parse_request(body, len(body) + 1)


def outputs(value: Any, *, batch: bool = False) -> list[Tensor]:
    values = value if batch else [value]
    return output_tensors([Payload.from_json(v) for v in values], batch=batch)


def test_results_become_tensors_with_inferred_datatype_and_shape() -> None:
    assert outputs({"digit": 7, "p": 0.5}) == [
        Tensor("digit", "INT64", (1,), [7]),
        Tensor("p", "FP64", (1,), [0.5]),
    ]
    assert outputs([[1, 2.5], [3, 4]]) == [Tensor("output", "FP64", (2, 2), [1, 2.5, 3, 4])]
    assert outputs([True, False]) == [Tensor("output", "BOOL", (2,), [True, False])]
    [ragged] = outputs([1, [2]])
    assert (ragged.datatype, ragged.shape, ragged.data) == ("BYTES", (1,), ["[1,[2]]"])
    assert ragged.parameters == {"content_type": "json"}
    [big] = outputs([2**70])
    assert big.datatype == "BYTES"  # past INT64: JSON text, never a wrong number


def test_a_batch_stacks_its_results() -> None:
    rows = [{"digit": 1, "p": 0.9}, {"digit": 2, "p": 0.8}]
    assert outputs(rows, batch=True) == [
        Tensor("digit", "INT64", (2,), [1, 2]),
        Tensor("p", "FP64", (2,), [0.9, 0.8]),
    ]
    [mixed] = outputs([{"a": 1}, {"b": 2}], batch=True)
    assert (mixed.name, mixed.shape, mixed.data) == ("output", (2,), ['{"a":1}', '{"b":2}'])


def test_text_and_binary_results_are_bytes_tensors() -> None:
    [text] = output_tensors([Payload.from_text("hi")], batch=False)
    assert tensor_json(text, binary=False) == (
        {"name": "output", "datatype": "BYTES", "shape": [1], "data": ["hi"]},
        b"",
    )
    [binary] = output_tensors([Payload.from_binary(b"\xff")], batch=False)
    found, raw = tensor_json(binary, binary=False)
    assert found["data"] == ["/w=="] and found["parameters"] == {"content_type": "base64"}
    found, raw = tensor_json(binary, binary=True)
    assert "data" not in found and raw == b"\x01\x00\x00\x00\xff"
    assert found["parameters"] == {"binary_data_size": 5}


def test_packed_tensors_read_back_the_same() -> None:
    for sent in (
        Tensor("a", "INT64", (3,), [1, -2, 3]),
        Tensor("b", "FP64", (2,), [0.25, 1e300]),
        Tensor("c", "BOOL", (2,), [True, False]),
        Tensor("d", "BYTES", (2,), ["é", ""]),
    ):
        raw = pack(sent)
        spec = {"name": sent.name, "datatype": sent.datatype, "shape": list(sent.shape)}
        head = request({**spec, "parameters": {"binary_data_size": len(raw)}})
        [got] = parse_request(head + raw, len(head)).inputs
        assert got.data == sent.data


def test_schemas_are_described_as_tensors() -> None:
    assert schema_tensors(DIGITS, name="input", batch=False) == [
        TensorInfo("input", "FP64", (-1, 64))
    ]
    assert schema_tensors(STRICT, name="input", batch=False) == [
        TensorInfo("text", "BYTES", (1,)),
        TensorInfo("n", "INT64", (1,)),
    ]
    assert schema_tensors(STRICT, name="output", batch=True) == [
        TensorInfo("text", "BYTES", (-1,)),
        TensorInfo("n", "INT64", (-1,)),
    ]
    assert schema_tensors({"type": "object"}, name="output", batch=True) == []
    assert schema_tensors(None, name="input", batch=False) == []


def test_a_shape_with_no_elements_but_countless_empty_lists_is_refused() -> None:
    # 10**20 empty rows cost no bytes to send but would be built as 10**20 lists.
    with pytest.raises(InvalidInput, match="empty lists: give at most 65536 rows"):
        parse_request(request(tensor("x", "FP32", [10**20, 0], [])), None)
    assert inputs_of(request(tensor("x", "FP32", [2, 0], []))) == ([("json", [[], []])], False)


def test_a_shape_of_more_than_32_dimensions_is_refused() -> None:
    with pytest.raises(InvalidInput, match="900 dimensions; modelbus takes at most 32"):
        parse_request(request(tensor("x", "FP32", [1] * 900, [1.0])), None)


def test_data_nested_too_deep_is_not_json() -> None:
    deep = b"[" * 5000 + b"1" + b"]" * 5000
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ' + deep + b"}]}"
    with pytest.raises(InvalidInput, match="nested too deeply"):
        parse_request(body, None)
    as_json = tensor("x", "BYTES", [1], [deep.decode()], content_type="json")
    with pytest.raises(InvalidInput, match="nested too deeply"):
        inputs_of(request(as_json))


def test_an_integer_too_large_for_a_float_is_no_fp_value() -> None:
    with pytest.raises(InvalidInput, match="is not a FP32 value"):
        parse_request(request(tensor("x", "FP32", [1], [10**400])), None)


def test_a_timeout_parameter_over_a_day_is_refused() -> None:
    body = request(tensor("x", "FP32", [1], [1.0]), parameters={"timeout": 10**400})
    with pytest.raises(InvalidInput, match="at most 86400000000"):
        parse_request(body, None)
