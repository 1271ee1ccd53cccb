"""The Open Inference Protocol v2 (REST) under /v2, driven by the official ``tritonclient``
(live, ready, metadata, infer with binary and JSON tensors) and by plain httpx for what the
client would not send: errors and unsupported parts of the protocol.

``examples/digits`` needs its own virtualenv (scikit-learn): the server builds it once, when
the ``digits`` fixture pushes it for the tests that use it (marked slow: seconds from a warm
uv cache, a cold one downloads scikit-learn and numpy, about 50 MB).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelbus.client import Client
from tests.support.fixtures import Published
from tests.support.server import ModelbusServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SAMPLES = json.loads((EXAMPLES / "digits" / "samples.json").read_text())


@pytest.fixture(scope="module")
def examples(
    modelbus_server: ModelbusServer, published: Published, admin: Client
) -> ModelbusServer:
    """The session's server with the test models, and examples/hello published as 1.0.0."""
    admin.push(EXAMPLES / "hello", version="1.0.0")
    return modelbus_server


@pytest.fixture(scope="module")
def digits(examples: ModelbusServer, admin: Client) -> ModelbusServer:
    """The same server with examples/digits published as 1.0.0 (its environment built)."""
    admin.push(EXAMPLES / "digits", version="1.0.0")
    return examples


@pytest.fixture
def oip(examples: ModelbusServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(examples.url.removeprefix("http://"))
    try:
        yield client
    finally:
        client.close()


def bearer(server: ModelbusServer, key: str | None = None) -> dict[str, str]:
    """A fresh header dict per call: tritonclient writes its own headers into the one given."""
    return {"Authorization": f"Bearer {key or server.admin_key}"}


def pixels(count: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.array([s["pixels"] for s in SAMPLES[:count]], dtype=np.float32)


# --- tritonclient --------------------------------------------------------------------------


def test_live_ready_and_server_metadata_with_a_bearer_key(
    examples: ModelbusServer, oip: triton.InferenceServerClient
) -> None:
    assert oip.is_server_live(headers=bearer(examples))
    assert oip.is_server_ready(headers=bearer(examples))
    metadata = oip.get_server_metadata(headers=bearer(examples))
    assert metadata["name"] == "modelbus"
    assert "binary_tensor_data" in metadata["extensions"]
    assert not oip.is_server_live()  # no key: 401, like every route but /health


@pytest.mark.slow
@pytest.mark.timeout(900)  # a cold uv cache downloads scikit-learn
def test_model_ready_by_name_and_version_spec(
    digits: ModelbusServer, oip: triton.InferenceServerClient
) -> None:
    assert oip.is_model_ready("examples/digits", headers=bearer(digits))
    assert oip.is_model_ready("examples/digits", "1.*", headers=bearer(digits))
    assert oip.is_model_ready("examples/digits", "latest", headers=bearer(digits))
    assert not oip.is_model_ready("examples/digits", "2.*", headers=bearer(digits))
    assert not oip.is_model_ready("examples/nothing", headers=bearer(digits))


@pytest.mark.slow
@pytest.mark.timeout(900)  # a cold uv cache downloads scikit-learn
def test_metadata_reports_the_schemas_as_tensors(
    digits: ModelbusServer, oip: triton.InferenceServerClient
) -> None:
    described = oip.get_model_metadata("examples/digits", headers=bearer(digits))
    assert described["name"] == "examples/digits"
    assert described["versions"] == ["1.0.0"]
    assert described["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 64]}]
    assert described["outputs"] == [
        {"name": "digit", "datatype": "INT64", "shape": [-1]},
        {"name": "confidence", "datatype": "FP64", "shape": [-1]},
    ]
    schema = json.loads((EXAMPLES / "digits" / "schemas" / "input.json").read_text())
    assert described["parameters"]["input_schema"] == schema
    pinned = oip.get_model_metadata("examples/digits", "1.0.*", headers=bearer(digits))
    assert pinned["versions"] == ["1.0.0"]
    hello = oip.get_model_metadata("examples/hello", headers=bearer(digits))
    assert hello["inputs"] == [] and hello["outputs"] == []  # no schema declared
    assert "parameters" not in hello
    strict = oip.get_model_metadata("test/strict", headers=bearer(digits))
    assert strict["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [1]},
        {"name": "break_output", "datatype": "BOOL", "shape": [1]},
    ]
    assert strict["outputs"] == []  # an object whose properties are not declared


@pytest.mark.slow
@pytest.mark.timeout(900)  # a cold uv cache downloads scikit-learn
def test_digits_reads_a_batch_of_fp32_images(
    digits: ModelbusServer, oip: triton.InferenceServerClient
) -> None:
    images = pixels(len(SAMPLES))
    tensor = triton.InferInput("input", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)  # binary tensor data, the client's default
    result = oip.infer("examples/digits", [tensor], request_id="batch-1", headers=bearer(digits))
    response = result.get_response()
    assert response["model_name"] == "examples/digits"
    assert response["model_version"] == "1.0.0"
    assert response["id"] == "batch-1"
    digits = result.as_numpy("digit")
    confidence = result.as_numpy("confidence")
    assert digits is not None and confidence is not None
    assert digits.dtype == np.int64 and digits.shape == (len(SAMPLES),)
    labels = [s["label"] for s in SAMPLES]
    assert sum(int(d) == label for d, label in zip(digits, labels, strict=True)) >= len(labels) - 1
    assert ((confidence > 0) & (confidence <= 1)).all()


@pytest.mark.slow
@pytest.mark.timeout(900)  # a cold uv cache downloads scikit-learn
def test_digits_as_json_tensors_on_a_version_spec(
    digits: ModelbusServer, oip: triton.InferenceServerClient
) -> None:
    images = pixels(2)
    tensor = triton.InferInput("input", [2, 64], "FP32")
    tensor.set_data_from_numpy(images, binary_data=False)
    wanted = [triton.InferRequestedOutput("digit", binary_data=False)]
    result = oip.infer(
        "examples/digits", [tensor], model_version="1.*", outputs=wanted, headers=bearer(digits)
    )
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["digit"]  # the one asked for
    assert response["outputs"][0]["data"] == [SAMPLES[0]["label"], SAMPLES[1]["label"]]
    assert response["outputs"][0]["shape"] == [2]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a cold uv cache downloads scikit-learn
def test_one_image_unbatched_gives_one_prediction(
    digits: ModelbusServer, oip: triton.InferenceServerClient
) -> None:
    tensor = triton.InferInput("input", [64], "FP32")
    tensor.set_data_from_numpy(pixels(1)[0])
    result = oip.infer("examples/digits", [tensor], headers=bearer(digits))
    digit = result.as_numpy("digit")
    assert digit is not None and digit.shape == (1,) and int(digit[0]) == SAMPLES[0]["label"]


def test_hello_takes_a_bytes_tensor_as_text(
    examples: ModelbusServer, oip: triton.InferenceServerClient
) -> None:
    name = np.array([b"Ada"], dtype=np.object_)
    binary = triton.InferInput("name", [1], "BYTES")
    binary.set_data_from_numpy(name)
    result = oip.infer("examples/hello", [binary], headers=bearer(examples))
    output = result.as_numpy("output")
    assert output is not None and output.tolist() == [b"Hello, Ada!"]
    as_json = triton.InferInput("name", [1], "BYTES")
    as_json.set_data_from_numpy(np.array(["Grace"], dtype=np.object_), binary_data=False)
    wanted = [triton.InferRequestedOutput("output", binary_data=False)]
    result = oip.infer("examples/hello", [as_json], outputs=wanted, headers=bearer(examples))
    assert result.get_response()["outputs"] == [
        {"name": "output", "datatype": "BYTES", "shape": [1], "data": ["Hello, Grace!"]}
    ]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a cold uv cache downloads scikit-learn
def test_the_clients_error_carries_status_and_message(
    digits: ModelbusServer, oip: triton.InferenceServerClient
) -> None:
    tensor = triton.InferInput("input", [1, 63], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 63), dtype=np.float32))
    with pytest.raises(InferenceServerException) as unknown:
        oip.infer("examples/nothing", [tensor], headers=bearer(digits))
    assert unknown.value.status() == "404"
    assert "examples/nothing" in unknown.value.message()
    with pytest.raises(InferenceServerException) as rejected:
        oip.infer("examples/digits", [tensor], headers=bearer(digits))
    assert rejected.value.status() == "400"
    assert "schema" in rejected.value.message()


# --- plain HTTP: errors and what modelbus does not support ---------------------------------


def infer(
    server: ModelbusServer, model: str, body: dict[str, Any], **headers: str
) -> tuple[int, Any]:
    with server.http(**headers) as http:
        answer = http.post(f"/v2/models/{model}/infer", json=body)
    return answer.status_code, answer.json()


def one(name: str, datatype: str, shape: list[int], data: Any, **parameters: Any) -> dict[str, Any]:
    tensor = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    return {**tensor, "parameters": parameters} if parameters else tensor


def test_results_become_tensors_with_inferred_types(examples: ModelbusServer) -> None:
    value = {"ints": [[1, 2], [3, 4]], "floats": [0.5, 1], "flag": True, "odd": [1, [2]]}
    status, answer = infer(
        examples,
        "test/echo",
        {
            "id": "42",
            "inputs": [one("input", "BYTES", [1], [json.dumps(value)], content_type="json")],
        },
    )
    assert status == 200, answer
    assert answer["id"] == "42"
    assert answer["outputs"] == [
        {"name": "ints", "datatype": "INT64", "shape": [2, 2], "data": [1, 2, 3, 4]},
        {"name": "floats", "datatype": "FP64", "shape": [2], "data": [0.5, 1]},
        {"name": "flag", "datatype": "BOOL", "shape": [1], "data": [True]},
        {
            "name": "odd",
            "datatype": "BYTES",
            "shape": [1],
            "data": ["[1,[2]]"],
            "parameters": {"content_type": "json"},
        },
    ]


def test_a_tensor_is_shaped_and_several_make_an_object(examples: ModelbusServer) -> None:
    status, shaped = infer(
        examples, "test/echo", {"inputs": [one("m", "INT32", [2, 3], [1, 2, 3, 4, 5, 6])]}
    )
    assert status == 200 and shaped["outputs"][0]["shape"] == [2, 3]
    status, greeted = infer(
        examples,
        "examples/hello",
        {"inputs": [one("name", "BYTES", [], ["Ada"]), one("x", "INT8", [1], [1])]},
    )
    assert status == 200, greeted
    assert greeted["outputs"] == [
        {"name": "greeting", "datatype": "BYTES", "shape": [1], "data": ["Hello, Ada!"]}
    ]
    # test/strict declares "text" a string: a one-element tensor is that string.
    status, strict = infer(
        examples, "test/strict", {"inputs": [one("text", "BYTES", [1], ["abc"])]}
    )
    assert status == 200, strict
    assert strict["outputs"][0]["data"] == ["ABC"]


def test_parameters_reach_the_model_and_timeout_is_honoured(examples: ModelbusServer) -> None:
    parameters = {"tenant": "acme", "retries": 3}
    status, answer = infer(
        examples,
        "test/echo",
        {
            "parameters": parameters,
            "inputs": [one("attributes", "BOOL", [], [True]), one("x", "INT8", [], [0])],
        },
    )
    assert status == 200, answer
    got = {o["name"]: o["data"] for o in answer["outputs"]}
    assert got["tenant"] == ["acme"] and got["retries"] == ["3"]
    status, late = infer(
        examples,
        "test/echo",
        {
            "parameters": {"timeout": 200_000},
            "inputs": [one("sleep", "FP64", [], [3]), one("x", "INT8", [], [0])],
        },
    )
    assert status == 504 and isinstance(late["error"], str)


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"inputs": [one("a", "BF16", [1], [1.0])]}, 400, "BF16"),
        ({"inputs": [one("a", "FP32", [3], [1.0, 2.0])]}, 400, "2 elements"),
        ({"inputs": [one("a", "INT8", [1], [300])]}, 400, "INT8"),
        ({"inputs": []}, 400, "inputs"),
        (
            {"inputs": [one("a", "FP32", [1], [1.0], shared_memory_region="r")]},
            400,
            "shared_memory_region",
        ),
        (
            {"parameters": {"sequence_id": 7}, "inputs": [one("a", "FP32", [1], [1.0])]},
            400,
            "sequences",
        ),
        (
            {
                "inputs": [one("a", "FP32", [1], [1.0])],
                "outputs": [{"name": "output", "parameters": {"classification": 3}}],
            },
            400,
            "classification",
        ),
        (
            {"inputs": [one("a", "FP32", [1], [1.0])], "outputs": [{"name": "scores"}]},
            400,
            "'scores'",
        ),
        ({"inputs": [one("a", "BYTES", [1], ["x"], content_type="xml")]}, 400, "xml"),
    ],
)
def test_what_modelbus_does_not_support_is_named(
    examples: ModelbusServer, body: dict[str, Any], status: int, named: str
) -> None:
    got, answer = infer(examples, "test/echo", body)
    assert got == status
    assert set(answer) == {"error"} and named in answer["error"]


def test_errors_take_the_protocols_shape_on_every_path(
    examples: ModelbusServer, admin: Client
) -> None:
    body = {"inputs": [one("a", "INT64", [2], [1, 2])]}
    status, model_error = infer(examples, "examples/hello", body)
    assert status == 400 and "name" in model_error["error"]  # the model's own message
    status, no_key = infer(examples, "examples/hello", body, Authorization="")
    assert status == 401 and isinstance(no_key["error"], str)
    other = admin.create_key("oip-echo-only", ["call:test/echo"]).key
    status, forbidden = infer(examples, "examples/hello", body, Authorization=f"Bearer {other}")
    assert status == 403 and isinstance(forbidden["error"], str)
    with examples.http() as http:
        compressed = http.post(
            "/v2/models/test/echo/infer",
            content=gzip.compress(json.dumps(body).encode()),
            headers={"Content-Encoding": "gzip"},
        )
        no_owner = http.get("/v2/models/echo/versions/1.0.0/ready")
        wrong_method = http.get("/v2/models/test/echo/infer")
        not_json = http.post("/v2/models/test/echo/infer", content=b"{")
    assert compressed.status_code == 415 and "gzip" in compressed.json()["error"]
    assert no_owner.status_code == 404 and "OWNER/NAME" in no_owner.json()["error"]
    assert wrong_method.status_code == 405 and isinstance(wrong_method.json()["error"], str)
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]


def test_binary_tensor_data_whose_size_does_not_add_up_is_refused(examples: ModelbusServer) -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "a",
                    "datatype": "FP32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    with examples.http() as http:
        short = http.post(
            "/v2/models/test/echo/infer",
            content=head + b"\x00" * 4,
            headers={"Inference-Header-Content-Length": str(len(head))},
        )
        extra = http.post(
            "/v2/models/test/echo/infer",
            content=head + b"\x00" * 12,
            headers={"Inference-Header-Content-Length": str(len(head))},
        )
    assert short.status_code == 400 and "past the end" in short.json()["error"]
    assert extra.status_code == 400 and "belong to no input" in extra.json()["error"]


def test_the_openapi_document_lists_the_routes(examples: ModelbusServer) -> None:
    with examples.http() as http:
        paths = http.get("/openapi.json").json()["paths"]
    for path, method in (
        ("/v2", "get"),
        ("/v2/health/live", "get"),
        ("/v2/health/ready", "get"),
        ("/v2/models/{owner}/{name}", "get"),
        ("/v2/models/{owner}/{name}/versions/{spec}", "get"),
        ("/v2/models/{owner}/{name}/ready", "get"),
        ("/v2/models/{owner}/{name}/versions/{spec}/ready", "get"),
        ("/v2/models/{owner}/{name}/infer", "post"),
        ("/v2/models/{owner}/{name}/versions/{spec}/infer", "post"),
    ):
        assert "OIP" in paths[path][method]["summary"], path
    assert not any(p.startswith("/v2/{") for p in paths)


def test_requests_that_broke_the_server_are_refused(examples: ModelbusServer) -> None:
    deep = b"[" * 5000 + b"1" + b"]" * 5000
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ' + deep + b"}]}"
    with examples.http() as http:
        nested = http.post("/v2/models/test/echo/infer", content=body)
        superscript = http.post(
            "/v2/models/test/echo/infer",
            content=b"{}",
            headers={"Inference-Header-Content-Length": b"\xb2"},  # "²"
        )
    assert nested.status_code == 400 and "nested too deeply" in nested.json()["error"]
    assert superscript.status_code == 400 and "number of bytes" in superscript.json()["error"]
    status, answer = infer(
        examples,
        "test/echo",
        {"inputs": [one("x", "FP32", [1], [1.0])], "parameters": {"timeout": 10**400}},
    )
    assert status == 400 and "at most" in answer["error"]
