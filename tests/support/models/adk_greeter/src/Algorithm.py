# An Algorithmia ADK algorithm as Algorithmia's template writes one: apply(input, state)
# with a load(), run by ADK(apply, load).init(). modelbus runs it unmodified.
import os

from adk import ADK

LOADS = []


def load():
    LOADS.append(os.getpid())
    return {"greeting": "Hello", "pid": os.getpid()}


def apply(input, state):
    if isinstance(input, bytes):
        return input[::-1]
    if isinstance(input, str):
        return f"{state['greeting']} {input}"
    if "fail" in input:
        raise ValueError(input["fail"])
    return {"input": input, "pid": state["pid"], "loads": len(LOADS)}


algorithm = ADK(apply, load)
algorithm.init("Algorithmia")
