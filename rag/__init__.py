"""medlit answers and interfaces: the ``medlit`` CLI (and, as they land, the answer pipeline, API and batch jobs)."""
