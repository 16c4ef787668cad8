"""One error base for the whole project, with one subclass per concern.

Every error the project raises on purpose derives from ``EvalError``: the CLI prints those as one clean
line naming the file or flag, and lets anything else (a bug, a shape mismatch inside torch) through with
its traceback. Each concern also keeps the builtin base callers already catch (``ValueError``,
``RuntimeError``, ``PermissionError``), so ``except ValueError`` around a bad file still works.

    EvalError
    ├── InputError        a file, folder, flag value or data set the user gave is wrong (ValueError)
    ├── ComputeError      the data cannot give the number asked for: too few clips, a bad state (ValueError)
    ├── UnavailableError  a model, package, engine or database cannot be built or reached (RuntimeError)
    └── AccessError       a rater or token may not do this (PermissionError)
"""

from __future__ import annotations

__all__ = ["AccessError", "ComputeError", "EvalError", "InputError", "UnavailableError"]


class EvalError(Exception):
    """Base of every error the project raises on purpose (the CLI shows these without a traceback)."""


class InputError(EvalError, ValueError):
    """A file, folder, flag value or data set the user gave is wrong; the message names it."""


class ComputeError(EvalError, ValueError):
    """The data cannot give the number asked for (too few clips, inconsistent metric state, solver failure)."""


class UnavailableError(EvalError, RuntimeError):
    """A model, optional package, engine or database that cannot be built or reached here."""


class AccessError(EvalError, PermissionError):
    """A rater, token or role that may not do what was asked."""
