"""What every part of the demo agrees on: settings, broker topology, task statuses, limits.

This package imports nothing else of the project, so the API, the consumer, Celery, the
deployment files and the tests can all depend on it without cycles.
"""
