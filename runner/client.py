"""The demo's JSON API as a script would use it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from common import routes
from common.statuses import TaskStatus
from runner.polling import wait_for

if TYPE_CHECKING:
    from runner.services import Service


class ApiClient:
    """One demo's JSON API; ``service`` is the api process behind it when the runner started it."""

    def __init__(self, base_url: str, service: Service | None = None, token: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.service = service
        if token:  # the API's API_TOKEN: sent on every request, as a script would
            self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def send(self, method: str, timeout: float, count: int = 1, fail: bool = False) -> list[dict]:
        response = self.session.post(
            self.url(routes.TASKS),
            json={"method": method, "timeout": timeout, "count": count, "fail": fail},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        return response.json()["tasks"]

    def task(self, task_num: int) -> dict:
        response = self.session.get(self.url(routes.TASK.format(task_num=task_num)), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_final(self, task_nums: list[int], timeout: float = 30.0) -> list[dict]:
        """Poll until every task is DONE or ERROR; return them in the order asked."""

        def all_final() -> list[dict] | None:
            tasks = [self.task(n) for n in task_nums]
            return tasks if all(TaskStatus(t["status"]).is_final for t in tasks) else None

        return wait_for(all_final, timeout, interval=0.2, what=f"tasks {task_nums} to finish")
