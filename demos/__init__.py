"""End-to-end demos: `python -m demos.NAME`."""
