"""The Python SDK: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio), over httpx.

::

    from modelbus import Client

    with Client() as mb:                          # MODELBUS_URL, MODELBUS_API_KEY
        mb.push("examples/hello")                 # build + publish the next version
        out = mb.call("examples/hello", "world")  # -> CallResult(value="Hello world", ...)
        job = mb.submit("examples/hello@1.*", "later")
        print(mb.wait(job.id, timeout_s=30).unwrap().value)

Errors the server reports come back as the classes of :mod:`modelbus.errors`
(:class:`~modelbus.errors.VersionNotFound`, :class:`~modelbus.errors.ModelError` with the
model's ``stacktrace``, :class:`~modelbus.errors.Unauthenticated`...); a server that cannot be
reached raises :class:`~modelbus.errors.ModelbusError`.

The package imports nothing of the server, so the SDK can ship alone:

* :mod:`~modelbus.client.operations`: the request layer, every API operation written once
  (the request to send and how its answer is read) for both clients;
* :mod:`~modelbus.client.sync` (:class:`Client`) and :mod:`~modelbus.client.aio`
  (:class:`AsyncClient`): each sends those operations with its own httpx client;
* :mod:`~modelbus.client.responses`: reading answers, and the errors they stand for;
* :mod:`~modelbus.client.results`: :class:`CallResult` and :class:`Job`;
* :mod:`~modelbus.client.connection`: URL, key and timeouts;
* :mod:`~modelbus.client.archive`: the deterministic packer of model folders;
* :mod:`~modelbus.client.schemas` and :mod:`~modelbus.client.refs`: the API's JSON shapes and
  ``owner/name@spec``, which the server uses too.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelbus.client.aio import AsyncClient
    from modelbus.client.archive import ModelName, pack_model
    from modelbus.client.connection import DEFAULT_TIMEOUT_S, DEFAULT_URL
    from modelbus.client.operations import Bump, DefinitionLike, encode_input
    from modelbus.client.refs import ModelRef
    from modelbus.client.responses import error_from_detail, error_from_response
    from modelbus.client.results import CallResult, Job
    from modelbus.client.sync import Client

# name -> its module, imported on first use: the server imports ``refs`` and ``schemas`` of
# this package and must not pay for httpx on the way
_LAZY = {
    "AsyncClient": "aio",
    "ModelName": "archive",
    "pack_model": "archive",
    "DEFAULT_TIMEOUT_S": "connection",
    "DEFAULT_URL": "connection",
    "Bump": "operations",
    "DefinitionLike": "operations",
    "encode_input": "operations",
    "ModelRef": "refs",
    "error_from_detail": "responses",
    "error_from_response": "responses",
    "CallResult": "results",
    "Job": "results",
    "Client": "sync",
}

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_URL",
    "AsyncClient",
    "Bump",
    "CallResult",
    "Client",
    "DefinitionLike",
    "Job",
    "ModelName",
    "ModelRef",
    "encode_input",
    "error_from_detail",
    "error_from_response",
    "pack_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelbus.client' has no attribute {name!r}")
    return getattr(import_module(f"modelbus.client.{module}"), name)
