"""The process runner: the demo's services started from the Procfile, on the local broker.

The tests and ``make bench`` both run the demo through it, so that no service command is spelled
twice and a tool never reaches into ``tests/`` (the Docker image leaves that folder out).
A check that fails raises ``AssertionError``: :func:`runner.polling.wait_for` stops at once on it,
and pytest and the bench both report it with its message.
"""
