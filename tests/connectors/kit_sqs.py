"""Amazon SQS kit for the connector contract suite: a ``moto_server`` started once per test
process on a free port, a fresh standard queue per test, the lease being the queue's
visibility timeout (whole seconds, at least 1)."""

from __future__ import annotations

import importlib.util
import math
import os

from tests.aws.kit import sqs_url, unique_name
from tests.aws.motoserver import FAKE_CREDENTIALS, MotoServer, fake_credentials

from .kits import BrokerKit, Capabilities, QueueUrls, process_server


def _moto() -> MotoServer:
    """The process's moto server, started on first use and stopped at exit."""

    def start() -> MotoServer:
        server = MotoServer()
        server.start()
        return server

    return process_server("moto", start, MotoServer.stop)


class SqsKit(BrokerKit):
    """``sqs://`` on moto: a standard queue (no ordering promise), deliveries leased for the
    visibility timeout, ``ApproximateReceiveCount`` as the attempt."""

    name = "sqs"
    capabilities = Capabilities(fifo=False, cross_process=True, min_lease_s=1.0)

    @classmethod
    def unavailable(cls) -> str | None:
        for module in ("aiobotocore", "moto"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install -e '.[aws,dev]')"
        return None

    async def start(self) -> None:
        self._credentials = fake_credentials()
        self._credentials.__enter__()

    async def stop(self) -> None:
        self._credentials.__exit__(None, None, None)

    async def new_queue(self, *, lease_s: float) -> QueueUrls:
        url = sqs_url(
            _moto().endpoint_url,
            unique_name("contract"),
            create=True,
            wait_s=1,
            visibility_timeout_s=max(1, math.ceil(lease_s)),
        )
        return QueueUrls(source_url=url, sink_url=url)

    def subprocess_env(self) -> dict[str, str]:
        return {**os.environ, **FAKE_CREDENTIALS}


KITS = [SqsKit]
