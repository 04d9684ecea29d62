"""The work behind the `cspm-watch` commands that read and change a team's security data.

`service.cli` parses the options and calls one function here per command. Each function
prints its result as a rich table or as JSON (see `output.py`) and returns the exit code.
"""
