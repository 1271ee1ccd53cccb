def apply(input):
    if input.get("break_output"):
        return {"oops": "no text"}  # violates the declared output schema
    return {"text": input["text"].upper()}
