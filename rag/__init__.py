"""The answer pipeline: retrieve → focus (what the question is about) → generate → verify → ``Answer``."""
