"""A TCP proxy between modelbus and a broker, for network faults in tests.

    proxy = TcpProxy("127.0.0.1", broker_port)
    await proxy.start()                 # listens on a free port: give clients proxy.port
    await proxy.cut()                   # refuse new connections, reset the open ones
    await proxy.blackhole()             # accept, but let no byte through either way
    await proxy.restore()               # forward again, on the same port

``cut`` is a broker that went away (connection refused: clients notice at once);
``blackhole`` is a network partition (packets vanish: clients notice only through their
own timeouts). After a blackhole, ``restore`` resets the connections that lived through it:
bytes were dropped, so their streams are broken either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

__all__ = ["TcpProxy"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    """A TCP forwarder on a free local port (see the module docstring)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._blackholed = False
        self._partitioned: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.port = _free_port()
        await self._listen()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._abort(self._writers)

    async def blackhole(self) -> None:
        """Keep accepting, but forward nothing (in either direction) until :meth:`restore`."""
        self._blackholed = True
        self._partitioned |= self._writers
        if self._server is None:
            await self._listen()

    async def restore(self) -> None:
        """Forward again, on the same port; connections that lived through a blackhole are
        reset."""
        if self._blackholed:
            self._blackholed = False
            self._abort(self._partitioned)
        if self._server is None:
            await self._listen()

    async def close(self) -> None:
        await self.cut()

    def _abort(self, writers: set[asyncio.StreamWriter]) -> None:
        for writer in list(writers):
            writer.transport.abort()
            self._writers.discard(writer)
        writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._blackholed:
            self._writers.add(writer)
            self._partitioned.add(writer)
            with contextlib.suppress(OSError):
                while await reader.read(65536):
                    pass  # swallowed
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                self._partitioned.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self._blackholed:
                    continue  # the partition eats it
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
