"""Ready-to-copy calls of one model version: curl, the Python SDK, the TypeScript SDK.

Each snippet calls ``POST /v1/models/OWNER/NAME/versions/SPEC/invoke`` (curl) or
``call("OWNER/NAME@SPEC", input)`` (the SDKs) on the server the page was asked from, with an
example input made from the version's input schema. The API key is never in a snippet:
each reads it from the ``MODELBUS_API_KEY`` environment variable, the SDKs' own default.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

KEY_VARIABLE = "MODELBUS_API_KEY"
# An input schema deeper than this gets no more detail in its example.
MAX_EXAMPLE_DEPTH = 4


@dataclass(frozen=True, kw_only=True, slots=True)
class Snippet:
    """One snippet: its tab id, label, language and text."""

    id: str
    label: str
    language: str
    text: str


def example_input(schema: Mapping[str, Any] | None) -> Any:
    """An input the ``schema`` accepts, for the snippets: its first ``examples`` entry or
    ``default`` when it gives one, else a value built from ``type``, ``enum``, ``required``,
    ``properties``, ``items``, ``minItems`` and ``minimum``. ``{}`` without a schema."""
    if not schema:
        return {}
    return _example(schema, 0)


def _example(schema: Any, depth: int) -> Any:
    if not isinstance(schema, Mapping):
        return None
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else None
    return _typed_example(str(kind), schema, depth)


def _typed_example(kind: str, schema: Mapping[str, Any], depth: int) -> Any:
    if kind == "object":
        if depth >= MAX_EXAMPLE_DEPTH:
            return {}
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        names = list(required) if isinstance(required, list) and required else list(properties)
        return {str(n): _example(properties.get(n, {}), depth + 1) for n in names}
    if kind == "array":
        count = schema.get("minItems")
        count = count if isinstance(count, int) and count > 0 else 1
        item = _example(schema.get("items", {}), depth + 1) if depth < MAX_EXAMPLE_DEPTH else None
        return [item] * count
    if kind in ("number", "integer"):
        low = schema.get("minimum")
        value = low if isinstance(low, int | float) and not isinstance(low, bool) else 0
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    if kind == "string":
        return "text"
    return None


def invoke_url(base_url: str, owner: str, name: str, spec: str) -> str:
    """The invoke route of ``owner/name@spec`` on the server at ``base_url``."""
    parts = "/".join(quote(p, safe="") for p in (owner, name))
    return f"{base_url.rstrip('/')}/v1/models/{parts}/versions/{quote(spec, safe='')}/invoke"


def snippets(base_url: str, owner: str, name: str, spec: str, value: Any) -> list[Snippet]:
    """curl, Python and TypeScript calls of ``owner/name@spec`` with the JSON input
    ``value``, on the server at ``base_url``; the key is read from :data:`KEY_VARIABLE`."""
    base = base_url.rstrip("/")
    ref = f"{owner}/{name}@{spec}"
    body = json.dumps(value, ensure_ascii=False)
    curl = (
        f"curl -sS -X POST {shlex.quote(invoke_url(base, owner, name, spec))} \\\n"
        f'  -H "Authorization: Bearer ${KEY_VARIABLE}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d {shlex.quote(body)}\n"
    )
    python = (
        "import os\n\n"
        "from modelbus import Client\n\n"
        f"with Client({base!r}, key=os.environ[{KEY_VARIABLE!r}]) as mb:\n"
        f"    out = mb.call({ref!r}, {value!r})\n"
        "    print(out.value)\n"
    )
    typescript = (
        'import { Client } from "modelbus";\n\n'
        f"const mb = new Client({{ url: {json.dumps(base)}, key: process.env.{KEY_VARIABLE} }});\n"
        f"const out = await mb.call({json.dumps(ref)}, {body});\n"
        "console.log(out.value);\n"
    )
    return [
        Snippet(id="curl", label="curl", language="shell", text=curl),
        Snippet(id="python", label="Python", language="python", text=python),
        Snippet(id="typescript", label="TypeScript", language="typescript", text=typescript),
    ]
