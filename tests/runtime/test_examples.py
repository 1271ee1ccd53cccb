"""The example models under examples/, run through real pools.

digits and ocr need their own virtualenvs (scikit-learn; rapidocr + onnxruntime): those tests
are marked slow and build the environment once into ~/.cache/modelbus-tests/envs/.
"""

from __future__ import annotations

import ast
import difflib
import json
import shutil
import tomllib
from collections.abc import Callable
from typing import Any

import pytest

from modelbus.errors import ModelError
from modelbus.registry.launch import RunnerSpec
from modelbus.runtime.invocation import CallOptions, Payload, Result
from modelbus.runtime.pool import Pool

from .conftest import EXAMPLES

Pools = Callable[..., Pool]
ExampleSpec = Callable[..., RunnerSpec]
OPTIONS = CallOptions()


async def run(pool: Pool, *payloads: Payload) -> list[Any]:
    results = await pool.invoke(payloads, OPTIONS, version="1.0.0")
    return [r.output if isinstance(r, Result) else r for r in results]


def requirements(name: str) -> list[str]:
    manifest = tomllib.loads((EXAMPLES / name / "modelbus.toml").read_text())
    return list(manifest["runtime"]["requirements"])


def test_every_example_has_a_manifest_code_and_readme() -> None:
    folders = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
    assert folders == ["digits", "hello", "node-sentiment", "ocr"]
    for name in folders:
        manifest = tomllib.loads((EXAMPLES / name / "modelbus.toml").read_text())
        assert manifest["model"]["owner"] == "examples"
        assert manifest["model"]["name"] == name
        assert "curl" in (EXAMPLES / name / "README.md").read_text()


async def test_hello_greets_in_json_and_in_text(example_spec: ExampleSpec, pools: Pools) -> None:
    pool = pools(example_spec("hello"))
    greeting, text, refused = await run(
        pool,
        Payload.from_json({"name": "Ada"}),
        Payload.from_text("Grace"),
        Payload.from_binary(b"\x00"),
    )
    assert greeting.content_type == "json"
    assert greeting.value() == {"greeting": "Hello, Ada!"}
    assert text == Payload.from_text("Hello, Grace!")
    assert isinstance(refused, ModelError) and refused.permanent


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_node_sentiment_speaks_the_protocol(example_spec: ExampleSpec, pools: Pools) -> None:
    pool = pools(example_spec("node-sentiment"), max_batch_size=8)
    happy, sad, negated, refused = await run(
        pool,
        Payload.from_text("What a great, happy day"),
        Payload.from_json({"text": "The delivery was late and the box was broken."}),
        Payload.from_json("not good at all"),
        Payload.from_json({"score": 3}),
    )
    assert happy.value() == {
        "label": "positive",
        "score": 2,
        "words": {"positive": ["great", "happy"], "negative": []},
    }
    assert sad.value()["label"] == "negative" and sad.value()["score"] == -2
    assert negated.value()["label"] == "negative"
    assert isinstance(refused, ModelError) and refused.permanent
    assert "text" in refused.message


@pytest.mark.slow
async def test_digits_reads_digits(
    example_spec: ExampleSpec, pools: Pools, model_python: Callable[[list[str]], str]
) -> None:
    python = model_python(requirements("digits"))
    pool = pools(example_spec("digits", python=python))
    samples = json.loads((EXAMPLES / "digits" / "samples.json").read_text())
    inputs = [Payload.from_json(s["pixels"]) for s in samples]
    outputs = await run(pool, *inputs, Payload.from_json([1, 2, 3]))
    predictions = [o.value() for o in outputs[:-1]]
    correct = sum(p["digit"] == s["label"] for p, s in zip(predictions, samples, strict=True))
    assert correct >= len(samples) - 1
    assert all(0 < p["confidence"] <= 1 for p in predictions)
    assert isinstance(outputs[-1], ModelError) and outputs[-1].permanent  # wrong size
    [single] = await run(pool, inputs[0])
    assert single.value()["digit"] == samples[0]["label"]


def _expected_ocr_lines() -> tuple[str, ...]:
    """EXPECTED_LINES of make_sample.py, read without importing it (it needs Pillow)."""
    tree = ast.parse((EXAMPLES / "ocr" / "make_sample.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "EXPECTED_LINES":
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("make_sample.py has no EXPECTED_LINES")


@pytest.mark.slow
async def test_ocr_reads_the_sample_scan(
    example_spec: ExampleSpec, pools: Pools, model_python: Callable[[list[str]], str]
) -> None:
    python = model_python(requirements("ocr"))
    pool = pools(example_spec("ocr", python=python))
    image = (EXAMPLES / "ocr" / "sample.png").read_bytes()
    result, refused = await run(
        pool, Payload.from_binary(image, "image/png"), Payload.from_binary(b"no image")
    )
    value = result.value()
    expected = " ".join(_expected_ocr_lines())
    seen = " ".join(line["text"] for line in value["lines"])
    similarity = difflib.SequenceMatcher(None, _squash(expected), _squash(seen)).ratio()
    assert similarity > 0.95, (expected, seen)
    assert value["text"].count("\n") == len(value["lines"]) - 1
    assert all(len(line["box"]) == 4 and 0 < line["score"] <= 1 for line in value["lines"])
    assert isinstance(refused, ModelError) and refused.permanent


def _squash(text: str) -> str:
    return " ".join(text.split()).lower()
