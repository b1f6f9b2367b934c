"""The one exception type a user should ever see from our command lines."""


class UserError(Exception):
    """Bad input or an impossible request: the message is one line that says what to do.

    Command-line entry points print it as ``error: <message>`` and exit with status 2, without a
    traceback. Anything else that escapes is a bug in hallugraph.
    """
