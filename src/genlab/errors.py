"""The one exception type for bad user input."""


class GenlabError(Exception):
    """Bad input (config, data, checkpoint, path) with a message that says how to fix it.

    The CLI prints the message and exits with status 2, without a traceback.
    """
