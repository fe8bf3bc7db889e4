"""Errors that a user can fix by changing an input, a path or a setting."""


class InputError(ValueError):
    """A bad input (file, query, model path, setting).

    The message names the offending value and says what to do. The command line turns it into a
    one-line message and a non-zero exit, without a traceback.
    """
