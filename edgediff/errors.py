"""The package's exception types: each message names the problem and what was expected."""


class EdgediffError(Exception):
    """Base class of every error edgediff raises on bad input; the CLI prints it as one line, exit 2."""


class ModelFileError(EdgediffError):
    """A model directory, checkpoint or artifact is missing, truncated, corrupt or of an unknown format."""


class InputError(EdgediffError, ValueError):
    """An argument or array has the wrong shape, dtype, range or value."""


class ConversionError(EdgediffError):
    """A backend's converter failed on a network it was given (the message names the component and the reason)."""


class EdgediffWarning(UserWarning):
    """Something edgediff assumed or left out that the user should know (the CLI prints it as one line)."""


class MissingDependencyError(EdgediffError, ImportError):
    """An optional backend is not installed; the message names the pip extra that brings it."""


def require(module: str, extra: str):
    """Import an optional heavy dependency, or raise with the extra to install.

    A package that is installed but fails to import (a broken native library, a version clash) raises the same
    error type with its own reason, since reinstalling the extra is also what fixes that.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{module} is not installed ({e}); install it with: pip install \"edgediff[{extra}]\""
        ) from None
    except Exception as e:  # noqa: BLE001 - any import-time failure of an optional backend is reported the same way
        reason = (str(e).splitlines() or [""])[0][:200]
        raise MissingDependencyError(
            f"{module} is installed but failed to import ({type(e).__name__}: {reason}); reinstall it with: "
            f"pip install --force-reinstall \"edgediff[{extra}]\""
        ) from None
