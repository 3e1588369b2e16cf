"""Errors a user can fix (bad data, bad names); `obsrv-task` prints them without a traceback."""


class TaskError(Exception):
    """A problem with the user's data or spec, explained in one paragraph."""
