"""Measure the demo as it runs: real api, consumers and Celery workers on the local broker.

Every run uses a vhost of its own (deleted afterwards) and sends traffic to 127.0.0.1 only, in
bounded batches. The figures go to stdout and to bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

from common.logs import configure_logging
from common.settings import Settings
from runner.broker import scratch_vhost
from runner.client import ApiClient
from runner.polling import wait_for
from runner.services import QUICK_START, Services, demo_settings

log = logging.getLogger("bench")
RESULTS = Path(__file__).parent / "results" / "latest.md"


@dataclasses.dataclass
class Demo:
    settings: Settings
    services: Services
    api: ApiClient


@contextmanager
def demo(base: Settings, consumers: int = 0, celery_workers: int = 0) -> Iterator[Demo]:
    """A fresh demo in a vhost of its own, with the asked number of workers."""
    management = requests.Session()
    management.auth = (base.rmq_user, base.rmq_password)
    with tempfile.TemporaryDirectory() as state, scratch_vhost(base, management) as vhost:
        settings = dataclasses.replace(
            demo_settings(base, vhost, Path(state)), log_level="WARNING"
        )
        services = Services(Path(state), extra_args=QUICK_START)
        try:
            api = services.start_api(settings)
            if consumers:
                services.start_workers("consumer", settings, consumers)
            if celery_workers:
                services.start_workers("celery_worker", settings, celery_workers)
            yield Demo(settings, services, api)
        finally:
            services.stop_all()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def timed(func: Callable[[], object]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def wait_all_final(api: ApiClient, count: int, timeout: float) -> list[dict]:
    def finished() -> list[dict] | None:
        tasks = api.session.get(api.url("/api/tasks"), params={"limit": count}, timeout=10).json()
        tasks = tasks["tasks"]
        done = [t for t in tasks if t["status"] in ("DONE", "ERROR")]
        return done if len(done) == count else None

    return wait_for(finished, timeout, interval=0.2, what=f"{count} tasks to finish")


def throughput(base: Settings, method: str, tasks: int) -> dict[str, float]:
    """Tasks of zero work through one worker process (3 threads / 3 pool processes)."""
    kind = {"consumers": 1} if method == "rmq" else {"celery_workers": 1}
    with demo(base, **kind) as d:
        batch = 100
        started = time.perf_counter()
        for _ in range(tasks // batch):
            d.api.send(method, timeout=0, count=batch)
        accepted = time.perf_counter() - started
        finished = wait_all_final(d.api, tasks, timeout=300)
        total = time.perf_counter() - started
    latencies = [t["duration"] * 1000 for t in finished]
    return {
        "accept_per_s": tasks / accepted,
        "done_per_s": tasks / total,
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
    }


def post_latency(base: Settings, requests_count: int) -> dict[str, dict[str, float]]:
    """How long the client waits for a 202, one task per request (no workers: nothing runs)."""
    figures = {}
    with demo(base) as d:
        for method in ("rmq", "celery"):
            samples = [
                timed(lambda m=method: d.api.send(m, timeout=0)) * 1000
                for _ in range(requests_count)
            ]
            figures[method] = {
                "p50_ms": percentile(samples, 50), "p95_ms": percentile(samples, 95),
            }
    return figures


def sync_rate(base: Settings, requests_count: int, clients: int) -> float:
    with demo(base) as d:
        url = d.api.url("/get_sync_data/")

        def one(_: int) -> None:
            assert requests.get(url, params={"data_id": 12}, timeout=10).status_code == 200

        with ThreadPoolExecutor(clients) as pool:
            elapsed = timed(lambda: list(pool.map(one, range(requests_count))))
    return requests_count / elapsed


def scaling(base: Settings, method: str, workers: int, tasks: int = 12) -> float:
    """Wall time of ``tasks`` one-second tasks with ``workers`` worker processes."""
    kind = {"consumers": workers} if method == "rmq" else {"celery_workers": workers}
    with demo(base, **kind) as d:
        started = time.perf_counter()
        d.api.send(method, timeout=1, count=tasks)
        wait_all_final(d.api, tasks, timeout=120)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per throughput run")
    args = parser.parse_args()
    base = Settings.from_env()
    configure_logging(dataclasses.replace(base, log_level="INFO"))
    logging.getLogger("pika").setLevel(logging.WARNING)  # a line per helper connection otherwise

    lines = ["| Замер | RabbitMQ (pika) | Celery |", "| --- | --- | --- |"]
    runs = {m: throughput(base, m, args.tasks) for m in ("rmq", "celery")}
    lines += [
        f"| Приём задач API, задач/с (пачки по 100) | {runs['rmq']['accept_per_s']:.0f} "
        f"| {runs['celery']['accept_per_s']:.0f} |",
        f"| Выполнение {args.tasks} задач без работы, задач/с (1 воркер) "
        f"| {runs['rmq']['done_per_s']:.0f} | {runs['celery']['done_per_s']:.0f} |",
        f"| Задержка от отправки до DONE, p50 / p95, мс | {runs['rmq']['latency_p50_ms']:.0f} / "
        f"{runs['rmq']['latency_p95_ms']:.0f} | {runs['celery']['latency_p50_ms']:.0f} / "
        f"{runs['celery']['latency_p95_ms']:.0f} |",
    ]
    posts = post_latency(base, 200)
    lines.append(
        "| `POST /api/tasks` одной задачи до ответа 202, p50 / p95, мс "
        f"| {posts['rmq']['p50_ms']:.1f} / {posts['rmq']['p95_ms']:.1f} "
        f"| {posts['celery']['p50_ms']:.1f} / {posts['celery']['p95_ms']:.1f} |"
    )
    for workers in (1, 2):
        rmq, celery = scaling(base, "rmq", workers), scaling(base, "celery", workers)
        lines.append(
            f"| 12 задач по 1 с, воркеров: {workers} (по 3 параллельно в каждом), с "
            f"| {rmq:.1f} | {celery:.1f} |"
        )
    rate = sync_rate(base, 2000, clients=8)
    lines.append(f"| Синхронный `GET /get_sync_data/`, 8 клиентов, запросов/с | {rate:.0f} | — |")

    table = "\n".join(lines)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(table + "\n")
    log.info("results written to %s\n%s", RESULTS, table)


if __name__ == "__main__":
    main()
