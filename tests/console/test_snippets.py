"""Pure parts of the version and build pages: example inputs from schemas, the snippets'
text, and reading why a build failed from its log."""

from __future__ import annotations

from modelbus.web.console.models import build_failure
from modelbus.web.console.snippets import example_input, invoke_url, snippets

PIP_FAILURE_LOG = """== build of acme/ocr
launch check passed
creating environment sha256:abc at /data/envs/abc
$ /usr/bin/uv venv --python /usr/bin/python3 /data/envs/abc
Using CPython 3.11.7
$ /usr/bin/uv pip install --python /data/envs/abc/bin/python -r requirements.txt
  \u00d7 No solution found when resolving dependencies:
  \u2570\u2500\u25b6 Because there is no version of nothere==9.9 we can conclude that
      requirements are unsatisfiable.
error: command exited with status 1
"""


def test_example_inputs_follow_the_schema() -> None:
    assert example_input(None) == {}
    strict = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
    assert example_input(strict) == {"text": "text"}
    digits = {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 3}
    assert example_input(digits) == [0, 0, 0]
    assert example_input({"type": "object", "examples": [{"a": 1}]}) == {"a": 1}
    assert example_input({"enum": ["red", "green"]}) == "red"
    nested = {
        "properties": {"n": {"type": ["null", "integer"], "minimum": 2}, "b": {"type": "boolean"}}
    }
    assert example_input(nested) == {"n": 2, "b": False}


def test_snippets_name_the_version_and_never_a_key() -> None:
    found = {s.id: s.text for s in snippets("http://h:1/", "acme", "ocr", "1.2.3", {"x": True})}
    assert set(found) == {"curl", "python", "typescript"}
    assert "POST http://h:1/v1/models/acme/ocr/versions/1.2.3/invoke \\\n" in found["curl"]
    assert "$MODELBUS_API_KEY" in found["curl"]
    assert "-d '{\"x\": true}'" in found["curl"]
    assert "mb.call('acme/ocr@1.2.3', {'x': True})" in found["python"]
    assert 'mb.call("acme/ocr@1.2.3", {"x": true})' in found["typescript"]
    assert "process.env.MODELBUS_API_KEY" in found["typescript"]
    hashed = invoke_url("http://h", "a", "b", "sha256:ff")
    assert hashed == "http://h/v1/models/a/b/versions/sha256%3Aff/invoke"
    # An input with a quote survives the shell quoting.
    curl = snippets("http://h", "a", "b", "1.0.0", {"t": "it's"})[0].text
    assert """-d '{"t": "it'"'"'s"}'""" in curl


def test_a_failed_install_names_its_command_and_highlights_the_errors() -> None:
    failure = build_failure(PIP_FAILURE_LOG)
    assert failure.step.startswith("running /usr/bin/uv pip install")
    assert failure.reason == "command exited with status 1"
    marked = [line.text for line in failure.tail if line.error]
    assert marked == [
        "  \u00d7 No solution found when resolving dependencies:",
        "error: command exited with status 1",
    ]
    assert len(build_failure(PIP_FAILURE_LOG, tail_lines=3).tail) == 3


def test_a_launch_check_or_an_interrupted_build() -> None:
    launch = build_failure("== build of a/b\nerror: [runtime] entrypoint: model.py not found\n")
    assert launch.step == "checking the model can be launched"
    assert launch.reason == "[runtime] entrypoint: model.py not found"
    interrupted = build_failure("interrupted")
    assert "stopped before it finished" in interrupted.reason
