"""medlit answers and interfaces: the ``medlit`` CLI (then the answer pipeline, the API, batch jobs)."""
