"""Test model: returns its input as it came (JSON, text or bytes).

A JSON object can ask for behaviour: ``{"fail": "msg"}`` raises ValueError(msg),
``{"crash": true}`` kills the runner process,
``{"sleep": s}`` sleeps s seconds first, ``{"print": "text"}`` prints text, and
``{"binary": "text"}`` returns text's UTF-8 bytes as a binary result, ``{"attributes": true}``
returns the context attributes of the call.
"""

import os
import time

GREETING = "echo"


class Unprocessable(Exception):
    permanent = True


def apply(input, context=None):
    if isinstance(input, dict):
        if "print" in input:
            print(input["print"])
        if "sleep" in input:
            time.sleep(float(input["sleep"]))
        if input.get("crash"):
            os._exit(3)
        if "fail" in input:
            raise ValueError(input["fail"])
        if "fail_permanent" in input:
            raise Unprocessable(input["fail_permanent"])
        if "binary" in input:
            return input["binary"].encode()
        if input.get("attributes"):
            return dict(context.attributes)
        if "whoami" in input:
            return {"greeting": GREETING, "content_type": context.content_type}
    return input
