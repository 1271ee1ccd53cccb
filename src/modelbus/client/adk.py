"""Algorithmia ADK algorithm folders: pushed unmodified, with no ``modelbus.toml``.

An ADK folder holds ``algorithmia.conf`` (JSON: ``username``, ``algoname``, ``language``),
``requirements.txt`` and ``src/Algorithm.py`` (or ``src/<algoname>.py``), which builds
``ADK(apply, load)`` and calls ``.init()`` or ``.serve()``. :func:`adk_manifest` gives the
``modelbus.toml`` such a folder stands for: owner and name from ``algorithmia.conf`` (or
the ``name`` given, ``--name`` on the CLI), ``[runtime] kind = "adk"`` with the algorithm's
module as entrypoint and ``requirements.txt`` as requirements. The SDK adds it to the
archive it pushes (so the name is part of the content and its hash); the registry reads an
ADK folder uploaded without it the same way.

Standard library only; everything here blocks (file reads).
"""

from __future__ import annotations

import json
from pathlib import Path

from modelbus.client.refs import is_name
from modelbus.errors import ManifestError

__all__ = ["ADK_CONF", "adk_manifest", "is_adk_folder"]

ADK_CONF = "algorithmia.conf"
REQUIREMENTS_FILE = "requirements.txt"


def is_adk_folder(folder: Path) -> bool:
    """Whether ``folder`` is an ADK algorithm: ``algorithmia.conf`` and no ``modelbus.toml``."""
    return (folder / ADK_CONF).is_file() and not (folder / "modelbus.toml").is_file()


def adk_manifest(folder: Path, name: tuple[str, str] | None = None) -> str:
    """The ``modelbus.toml`` text for the ADK algorithm in ``folder``; ``name`` (owner,
    name) replaces ``algorithmia.conf``'s. Raises :class:`ManifestError` naming the file and
    what is missing."""
    conf = _read_conf(folder / ADK_CONF)
    owner, algo = name or (
        _conf_name(conf, "username", folder),
        _conf_name(conf, "algoname", folder),
    )
    language = str(conf.get("language", "python3"))
    if not language.startswith("python") or language.startswith(("python2", "python-2")):
        raise ManifestError(
            f"{folder / ADK_CONF}: language {language!r}: modelbus runs Python 3 ADK "
            "algorithms (for another language, write a modelbus.toml with kind = 'exec')"
        )
    module = _entry_module(folder, conf)
    lines = [
        f"# what {ADK_CONF} stands for (an Algorithmia ADK algorithm, pushed unmodified)",
        "[model]",
        f"owner = {json.dumps(owner)}",
        f"name = {json.dumps(algo)}",
        f"description = {json.dumps(f'Algorithmia ADK algorithm {owner}/{algo}')}",
        "",
        "[runtime]",
        'kind = "adk"',
        f"entrypoint = {json.dumps(module)}",
    ]
    if (folder / REQUIREMENTS_FILE).is_file():
        lines.append(f"requirements = {json.dumps(REQUIREMENTS_FILE)}")
    return "\n".join(lines) + "\n"


def _read_conf(file: Path) -> dict[str, object]:
    try:
        conf = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{file}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise ManifestError(f"{file}: cannot be read: {exc.strerror}") from None
    if not isinstance(conf, dict):
        raise ManifestError(f"{file}: must hold a JSON object")
    return conf


def _conf_name(conf: dict[str, object], key: str, folder: Path) -> str:
    value = conf.get(key)
    if not isinstance(value, str) or not is_name(value):
        raise ManifestError(
            f"{folder / ADK_CONF}: {key}: {value!r} is not a valid name (letters, digits, "
            "'_', '.' or '-'); fix it or give the name (modelbus models push DIR --name "
            "OWNER/NAME)"
        )
    return value


def _entry_module(folder: Path, conf: dict[str, object]) -> str:
    candidates = ["Algorithm", str(conf.get("algoname", ""))]
    for stem in candidates:
        if stem and (folder / "src" / f"{stem}.py").is_file():
            return f"src.{stem}"
    tried = " or ".join(f"src/{s}.py" for s in candidates if s)
    raise ManifestError(f"{folder}: an ADK algorithm needs its code in {tried}")
