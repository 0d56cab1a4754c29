"""The shared base every layer stands on: settings, errors, atomic writes, progress bars, secret redaction,
timestamps. It imports nothing of medlit's own layers."""
