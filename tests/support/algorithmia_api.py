"""``algorithmia-api-client`` 1.5.5, the generated client of Algorithmia's management API,
run against a real server.

It cannot live in the test environment: ``algorithmia`` 2.0.5 (in the ``dev`` extra) pins
``algorithmia-api-client==1.5.1`` and imports its ``DefaultApi``, which 1.5.5 no longer has.
So the ``api_client`` fixture installs 1.5.5 alone (``--no-deps``: its dependencies, urllib3,
six, certifi and python-dateutil, are in the test environment already) into a folder of its
own, once per session, and :func:`run_api_client` runs a script in a child Python that finds
1.5.5 first on its path. The script gets ``client`` (an ``ApiClient`` for the server with the
admin key) and ``models`` (the package's models) and puts what it found in ``out``, which
comes back through JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ModelbusServer

API_CLIENT = "algorithmia-api-client==1.5.5"
RUN_TIMEOUT_S = 120

_PREAMBLE = """
import json, sys
import algorithmia_api_client as api
from algorithmia_api_client import models
from algorithmia_api_client.rest import ApiException
assert hasattr(api, "AlgorithmsApi"), "algorithmia-api-client 1.5.1 came first on the path"
config = api.Configuration(host=sys.argv[1])
config.api_key["Authorization"] = "Simple " + sys.argv[2]
client = api.ApiClient(config)
out = {}
"""
_EPILOGUE = """
print("\\n" + json.dumps(out, default=str))
"""


@dataclass(frozen=True)
class ApiClientEnv:
    """Where 1.5.5 is installed."""

    path: Path

    def run(self, server: ModelbusServer, script: str, key: str | None = None) -> dict[str, Any]:
        """Run ``script`` (see the module docstring) and return its ``out``."""
        code = _PREAMBLE + textwrap.dedent(script) + _EPILOGUE
        env = {**os.environ, "PYTHONPATH": str(self.path)}
        done = subprocess.run(
            [sys.executable, "-c", code, server.url, key or server.admin_key],
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return found


@pytest.fixture(scope="session")
def api_client(tmp_path_factory: pytest.TempPathFactory) -> ApiClientEnv:
    target = tmp_path_factory.mktemp("algorithmia-api-client")
    uv = Path(sys.executable).with_name("uv")
    subprocess.run(
        [str(uv), "pip", "install", "--quiet", "--no-deps", "--target", str(target), API_CLIENT],
        check=True,
        timeout=RUN_TIMEOUT_S,
    )
    return ApiClientEnv(target)
