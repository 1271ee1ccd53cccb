# apply(input) alone, no load, started with .serve(); its file is src/<algoname>.py
from adk import ADK


def apply(input):
    return {"upper": input.upper()} if isinstance(input, str) else {"got": input}


ADK(apply).serve()
