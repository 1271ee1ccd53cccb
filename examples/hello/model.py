"""The smallest modelbus model: it greets whoever you name.

JSON ``{"name": "Ada"}`` -> ``{"greeting": "Hello, Ada!"}``; text ``Ada`` -> text ``Hello, Ada!``.
"""

from modelbus_runner import PermanentError


def apply(input):
    if isinstance(input, dict):
        return {"greeting": f"Hello, {input.get('name', 'world')}!"}
    if isinstance(input, str):
        return f"Hello, {input.strip() or 'world'}!"
    raise PermanentError('send {"name": "..."} as JSON, or a name as text')
