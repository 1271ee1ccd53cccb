"""End-to-end test model: each JSON input says what to do, and leaves a trace on disk.

``{"op": OP, "id": ID, "trace": PATH, ...}``; every call appends a ``start`` line (and an
``end`` line when it returns or raises) to the file ``trace``, as JSON with the time, the
runner's pid and the input's ``id``, so tests can count runs and concurrent calls.

* ``ok``: returns ``{"id", "n", "version", "pid"}`` (``n`` echoed if given).
* ``flaky``: appends the time to the file ``counter``; raises a (transient) error while the
  file has at most ``fails`` lines, then succeeds.
* ``permanent``: raises PermanentError (dead-lettered at once).
* ``crash_once``: the first call (no file ``counter`` yet) creates it and kills the runner
  with ``os._exit``; later calls succeed.
* ``sleep``: sleeps ``seconds`` (only the first time when ``counter`` is given: later calls
  return at once), then succeeds.

``VERSION`` differs between the builds the tests push, so results say which one ran.
"""

import json
import os
import time

from modelbus_runner import PermanentError

VERSION = "base"


def apply(input):
    if not isinstance(input, dict) or "op" not in input:
        return input
    trace = input.get("trace")
    _trace(trace, "start", input)
    try:
        return OPS[input["op"]](input)
    finally:
        _trace(trace, "end", input)


def _trace(path, event, input):
    if path:
        line = {"event": event, "id": input.get("id"), "pid": os.getpid(), "t": time.time()}
        with open(path, "a") as file:
            file.write(json.dumps(line) + "\n")


def _ok(input):
    return {"id": input.get("id"), "n": input.get("n"), "version": VERSION, "pid": os.getpid()}


def _flaky(input):
    with open(input["counter"], "a+") as file:
        file.write(f"{time.time()}\n")
        file.seek(0)
        calls = len(file.read().splitlines())
    if calls <= input["fails"]:
        raise RuntimeError(f"transient failure {calls} of {input['fails']}")
    return _ok(input)


def _permanent(input):
    raise PermanentError(f"input {input.get('id')} can never be processed")


def _crash_once(input):
    counter = input["counter"]
    if not os.path.exists(counter):
        open(counter, "w").close()
        os._exit(3)
    return _ok(input)


def _sleep(input):
    counter = input.get("counter")
    first = counter is None or not os.path.exists(counter)
    if counter is not None and first:
        open(counter, "w").close()
    if first:
        time.sleep(input["seconds"])
    return _ok(input)


OPS = {
    "ok": _ok,
    "flaky": _flaky,
    "permanent": _permanent,
    "crash_once": _crash_once,
    "sleep": _sleep,
}
