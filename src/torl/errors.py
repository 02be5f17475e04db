"""Exceptions shared across torl."""


class TorlError(Exception):
    """Base class of torl's own errors."""


class UserInputError(TorlError):
    """Bad input from the user (a file, a field, an argument). The message names where and why.

    The CLI prints it as one line and exits with status 2.
    """
