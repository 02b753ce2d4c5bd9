"""The API's HTTP paths, written once: the API serves them; the workers, the runner, the bench
and the page's script call them.

``{name}`` in a path is aiohttp's placeholder; a caller fills it in with ``str.format``.
"""

# The workers' callback, at the course's own path: POST {"task_num", "task_status", "worker_id"}.
CALLBACK = "/update_task_status_api/"
HEALTHZ = "/healthz"
METRICS = "/metrics"

# The JSON API: an application of its own mounted under API, with its own error rule.
API = "/api"
TASKS = "/api/tasks"
TASK = "/api/tasks/{task_num}"
WORKFLOWS = "/api/workflows"
SYNC_DATA = "/api/sync-data"
SYNC_LONG_DATA = "/api/sync-long-data"
EVENTS = "/api/events"
QUEUES = "/api/queues"
PURGE_QUEUE = "/api/queues/{queue}/purge"
DEAD_LETTERS = "/api/dead-letters"
REPLAY_DEAD_LETTERS = "/api/dead-letters/replay"
PURGE_DEAD_LETTERS = "/api/dead-letters/purge"
