"""The one exception type for bad user input, and the one way to quote another exception in its message."""


class GenlabError(Exception):
    """Bad input (config, data, checkpoint, path) with a message that says how to fix it.

    The CLI prints the message and exits with status 2, without a traceback.
    """


def first_line(exc: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (or its type name when it has none), at most `limit`
    characters: what a one-line error quotes of the cause."""
    text = str(getattr(exc, "msg", None) or exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if isinstance(exc, BaseException) else "no message"
    return lines[0][:limit]
