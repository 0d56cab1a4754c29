"""medlit answers and interfaces: the answer pipeline, the ``medlit`` CLI, the HTTP API, batch jobs."""


def medlit_version() -> str:
    """The installed medlit's version ("unknown" when run from a tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medlit")
    except PackageNotFoundError:
        return "unknown"
