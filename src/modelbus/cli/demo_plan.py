"""What ``modelbus demo`` runs: the whole product on one machine, in one command.

It runs the server (API, console when installed, listeners) on a data directory of its own,
publishes the example models (``hello``, ``node-sentiment`` when Node.js is there,
``digits``, ``ocr``), and creates the headline story's folder listener::

    dir://INBOX  ->  examples/ocr@latest  ->  dir://OUTBOX   (raw output: NAME.json)
                                           ->  dir://FAILED  (files it could not read:
                                                               NAME + NAME.error.json)

then prints where to drop files, where results appear, the admin key, and the exact shell
lines to try it all from another shell (:func:`next_lines`).
A second start on the same data directory reuses everything: the same key (kept in
``DATA_DIR/admin.key``, readable by its owner only), no rebuild (a push of unchanged content
is a no-op), the same listener. The API answers at once; examples are published in the
background, the OCR environment (about 400 MB) taking a few minutes the first time only.
Ctrl-C or SIGTERM stops it all gracefully.

The command and its options are :mod:`modelbus.cli.demo`, which imports this module only when
it runs (this one loads the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.markup import escape

from modelbus.client import DEFAULT_URL
from modelbus.config import Settings
from modelbus.errors import ModelbusError
from modelbus.listeners.definition import ListenerDefinition
from modelbus.web.app import run
from modelbus.web.server import Services, open_services

__all__ = ["EXAMPLES", "LISTENER", "DemoPlan", "find_examples", "run_demo"]

EXAMPLES = ("hello", "node-sentiment", "digits", "ocr")
LISTENER = "demo-ocr"
KEY_FILE = "admin.key"
# An 8x8 image of a handwritten 7, the input of examples/digits (its README has it too).
_SEVEN = (
    "[0,0,7,8,13,16,15,1,0,0,7,7,4,11,12,0,0,0,0,0,8,13,1,0,0,4,8,8,15,15,6,0,"
    "0,2,11,15,15,4,0,0,0,0,0,16,5,0,0,0,0,0,9,15,1,0,0,0,0,0,13,5,0,0,0,0]"
)
_NOTES = {
    "digits": "first time: builds a scikit-learn environment (about a minute)",
    "ocr": "first time: downloads rapidocr + onnxruntime (about 400 MB) and builds its "
    "environment, a few minutes; cached afterwards",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoPlan:
    """What the demo runs: the server settings, where the examples are, the folders."""

    settings: Settings
    examples: Path
    inbox: Path
    outbox: Path
    failed: Path
    console_path: str | None = None

    @classmethod
    def make(
        cls,
        settings: Settings,
        *,
        examples: Path | None = None,
        inbox: Path | None = None,
        outbox: Path | None = None,
    ) -> DemoPlan:
        """Folders default to ``inbox``, ``outbox`` and ``failed`` in the data directory;
        the three are added to the settings' ``dir_roots`` (folders inside the data
        directory are refused unless they lie in a root placed there explicitly)."""
        data = settings.data_dir
        folders = (
            (inbox or data / "inbox").expanduser().resolve(),
            (outbox or data / "outbox").expanduser().resolve(),
            (data / "failed").resolve(),
        )
        roots = (*(settings.dir_roots or ()), *folders)
        return cls(
            settings=replace(settings, dir_roots=roots),
            examples=find_examples(examples),
            inbox=folders[0],
            outbox=folders[1],
            failed=folders[2],
        )

    @property
    def url(self) -> str:
        host = self.settings.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{shown}:{self.settings.port}"

    def listener(self) -> ListenerDefinition:
        """The folder listener of the headline story."""
        return ListenerDefinition.from_mapping(
            {
                "name": LISTENER,
                "source": f"{folder_url(self.inbox)}?poll_ms=500",
                "model": "examples/ocr@latest",
                "outputs": [folder_url(self.outbox)],
                "error_sink": folder_url(self.failed),
                "output_mode": "raw",
                "timeout_s": 120,
                "retry": {"max_attempts": 3},
            }
        )


def folder_url(folder: Path) -> str:
    """The ``dir://`` URL of an absolute folder (spaces and the like percent-encoded)."""
    return "dir://" + quote(str(folder))


def find_examples(given: Path | None = None) -> Path:
    """The examples folder: ``given``, else the source checkout's, else ``./examples``.
    Raises :class:`ModelbusError` saying how to point at it."""
    candidates = [given] if given else [Path(__file__).resolve().parents[3] / "examples"]
    candidates.append(Path.cwd() / "examples")
    for folder in candidates:
        if folder is not None and (folder / "ocr" / "modelbus.toml").is_file():
            return folder.resolve()
    raise ModelbusError(
        "the example models were not found: run from a modelbus checkout, or give "
        "--examples PATH (the folder holding hello/, digits/, ocr/...)"
    )


# --- setting up -----------------------------------------------------------------------------


async def publish_examples(running: Services, plan: DemoPlan, say: Console) -> dict[str, str]:
    """Push and publish each example (no-op when unchanged); name -> version published."""
    published: dict[str, str] = {}
    for name in EXAMPLES:
        if name == "node-sentiment" and shutil.which("node") is None:
            say.print(f"[yellow]skipped examples/{name}: Node.js (node) is not installed[/]")
            continue
        note = f" [dim]({_NOTES[name]})[/dim]" if name in _NOTES else ""
        say.print(f"publishing examples/{name} ...{note}")

        def progress(line: str, name: str = name) -> None:
            say.print(f"  [dim]{escape(name)} | {escape(line)}[/dim]", highlight=False)

        try:
            pushed = await running.registry.push(
                plan.examples / name, bump="major", progress=progress
            )
        except ModelbusError as exc:
            say.print(f"[red]examples/{name} failed:[/] {escape(exc.message)}")
            continue
        assert pushed.version is not None
        state = "published" if pushed.created else "already published"
        say.print(f"[green]examples/{name} {pushed.version}[/] {state}")
        published[name] = pushed.version
    return published


async def setup(running: Services, plan: DemoPlan, say: Console, admin_key: str | None) -> None:
    """Publish the examples, create the folder listener, and say how to use it all."""
    for folder in (plan.inbox, plan.outbox, plan.failed):
        folder.mkdir(parents=True, exist_ok=True)
    published = await publish_examples(running, plan, say)
    if "ocr" not in published:
        say.print("[red]examples/ocr is not published: the folder listener is not created[/]")
        return
    applied = await running.listeners.apply([plan.listener()])
    verb = "created" if applied.created else "ready"
    say.print(
        f"[green]listener {LISTENER}[/] {verb}: {plan.inbox} -> examples/ocr -> {plan.outbox}"
    )
    say.print(summary(plan, admin_key, published))


def summary(plan: DemoPlan, admin_key: str | None, published: dict[str, str]) -> str:
    """The "what now" text printed once the demo is ready: where things are, then the exact
    lines to paste into another shell (:func:`next_lines`)."""
    key = admin_key or "(shown on the first start; see admin.key in the data directory)"
    key_file = plan.settings.data_dir / KEY_FILE
    lines = [
        "",
        "[bold]modelbus demo is ready[/bold]",
        f"  API:               {plan.url}   (reference: {plan.url}/console/api)",
        *([f"  console:           {plan.url}{plan.console_path}"] if plan.console_path else []),
        f"  admin API key:     {key}",
        f"                     (kept in {key_file})",
        f"  models:            {', '.join(f'examples/{n} {v}' for n, v in published.items())}",
        f"  drop images into:  {plan.inbox}",
        f"  results appear in: {plan.outbox}   (NAME.json: the text the OCR read)",
        f"  unreadable files:  {plan.failed}   (NAME, and NAME.error.json: why)",
        "",
        "  next, in another shell (each line can be pasted as it is):",
        *(f"    {escape(line)}" for line in next_lines(plan, published)),
        "",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def next_lines(plan: DemoPlan, published: dict[str, str]) -> list[str]:
    """Shell lines that put ``modelbus`` on the PATH, give it the URL and the key, and call
    each published example once: JSON, text, a file (binary), an asynchronous job, and a
    file dropped for the folder listener (each with a comment saying what it shows)."""
    q = shlex.quote
    key_file = q(str(plan.settings.data_dir / KEY_FILE))
    lines = [_path_line()]
    if plan.url != DEFAULT_URL:
        lines.append((f"export MODELBUS_URL={plan.url}", "the server (--url)"))
    lines.append((f'export MODELBUS_API_KEY="$(cat {key_file})"', "the key (--key)"))
    sample = q(str(plan.examples / "ocr" / "sample.png"))
    if "hello" in published:
        lines += [
            ('modelbus call examples/hello \'{"name": "Ada"}\'', "JSON in, JSON out"),
            ("modelbus call examples/hello --text Ada", "text in, text out"),
        ]
    if "node-sentiment" in published:
        command = "modelbus call examples/node-sentiment --text 'What a great day'"
        lines.append((command, "a model written in Node.js"))
    if "digits" in published:
        lines.append((f"modelbus call examples/digits '{_SEVEN}'", "8x8 pixels: a 7"))
    if "ocr" in published:
        result = q(str(plan.outbox / "sample.png.json"))
        lines += [
            (f"modelbus call examples/ocr --file {sample}", "an image (binary) in"),
            (f"job=$(modelbus call examples/ocr --file {sample} --async)", "a background job"),
            ('modelbus jobs show "$job" --wait 120', "its result"),
            (f"cp {sample} {q(str(plan.inbox))}/", "a file for the folder listener"),
            (f"until [ -f {result} ]; do sleep 1; done; cat {result}; echo", "its result"),
            (f"modelbus listeners status {LISTENER}", "the listener's figures"),
        ]
    width = min(max(len(command) for command, _ in lines), 72)
    return [f"{command:<{width}}  # {comment}" for command, comment in lines]


def _path_line() -> tuple[str, str]:
    """How to get this ``modelbus`` on a shell's PATH: its virtualenv's ``activate`` when it
    has one, else its folder added to ``PATH``."""
    folder = Path(sys.executable).parent
    if not (folder / "modelbus").exists() and (found := shutil.which("modelbus")):
        folder = Path(found).parent
    if (folder / "activate").is_file():
        return f". {shlex.quote(str(folder / 'activate'))}", "puts modelbus on the PATH"
    return f'export PATH={shlex.quote(str(folder))}:"$PATH"', "puts modelbus on the PATH"


# --- running --------------------------------------------------------------------------------


async def _reported(setting_up: Coroutine[Any, Any, None], say: Console) -> None:
    """Run the setup; a failure is printed (the server keeps running, usable by hand)."""
    try:
        await setting_up
    except ModelbusError as exc:
        say.print(f"[red]demo setup failed:[/] {escape(exc.message)}")
    except Exception as exc:
        say.print(f"[red]demo setup failed:[/] {escape(repr(exc))}")
        raise


def _save_key(data_dir: Path, key: str) -> None:
    path = data_dir / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key + "\n")


def _saved_key(data_dir: Path) -> str | None:
    with contextlib.suppress(OSError):
        return (data_dir / KEY_FILE).read_text(encoding="ascii").strip() or None
    return None


def demo_services(
    plan: DemoPlan, say: Console
) -> Callable[[Settings], AbstractAsyncContextManager[Services]]:
    """The server's services, plus the demo's setup running in the background."""

    @asynccontextmanager
    async def services(settings: Settings) -> AsyncIterator[Services]:
        def announce(key: str) -> None:
            _save_key(settings.data_dir, key)
            say.print(f"a new store: admin API key [bold]{key}[/bold]")

        async with open_services(settings, announce=announce) as running:
            admin_key = _saved_key(settings.data_dir)
            task = asyncio.create_task(
                _reported(setup(running, plan, say, admin_key), say), name="demo-setup"
            )
            try:
                yield running
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    return services


def run_demo(plan: DemoPlan, say: Console | None = None) -> None:
    """Run the demo until Ctrl-C or SIGTERM (blocks)."""
    from modelbus.web.app import create_app

    say = say or Console(highlight=False, soft_wrap=True)
    plan.settings.data_dir.mkdir(parents=True, exist_ok=True)
    say.print(f"modelbus demo: data in {plan.settings.data_dir}, serving on {plan.url}")
    services = demo_services(plan, say)
    app = create_app(plan.settings, services=services)
    paths = [str(getattr(route, "path", "")) for route in app.routes]
    console = next((p for p in paths if p.rstrip("/") == "/console"), None)
    if console is not None:
        plan = replace(plan, console_path=console)
        app = create_app(plan.settings, services=demo_services(plan, say))
    run(plan.settings, app=app)
