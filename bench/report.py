"""What a run means: each figure beside its baseline, the targets as ratios, the table and plot.

Everything here works on the run's results as plain JSON data (``bench/results/latest.json``),
so that a table or a plot can be made again from a saved run.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import topology

Results = dict[str, Any]

# Every consumer's task threads, every Celery worker's pool processes.
SLOTS_PER_WORKER = topology.CONCURRENCY
WORKER_COUNTS = (1, 2, 4)
SCALING = "scaling"  # the keys of the scaling targets start with it


@dataclasses.dataclass(frozen=True)
class Target:
    """One goal of the run: ``value`` compared with ``goal``, both in ``unit``.

    ``key`` names it for the code; ``label`` is what the reader of the table sees.
    """

    key: str
    label: str
    value: float
    goal: float
    at_least: bool  # the value must be >= goal; else it must be < goal
    unit: str = "%"

    @property
    def met(self) -> bool:
        compare: Callable[[float, float], bool] = operator.ge if self.at_least else operator.lt
        return compare(self.value, self.goal)

    @property
    def wanted(self) -> str:
        return f"{'≥' if self.at_least else '<'} {self.goal:g} {self.unit}"


def share(value: float, baseline: float) -> float:
    """``value`` as a percentage of ``baseline``."""
    return 100 * value / baseline


def ideal_rate(workers: int) -> float:
    """One-second tasks per second when every slot of every worker is always busy."""
    return SLOTS_PER_WORKER * workers


def scaling_shares(results: Results, method: str) -> dict[int, float]:
    """Workers -> the measured rate as a percentage of the ideal one."""
    rates = results["scaling"][method]
    return {int(n): share(rate, ideal_rate(int(n))) for n, rate in rates.items()}


def targets(results: Results) -> list[Target]:
    accept, e2e = results["accept"], results["e2e"]
    bare = accept["bare"]["rate"]
    found = [
        Target("accept_rmq", "Приём rmq, доля голого обработчика",
               share(accept["rmq"]["rate"], bare), 25, True),
        Target("accept_rmq_p99", "Приём rmq, p99", accept["rmq"]["p99_ms"], 50, False, "мс"),
        Target("accept_celery", "Приём celery, доля голого обработчика",
               share(accept["celery"]["rate"], bare), 10, True),
        Target("e2e_rmq", "Конец в конец rmq, доля брокера без API",
               share(e2e["rmq"], e2e["raw"]), 25, True),
    ]
    for method in ("rmq", "celery"):
        for workers, percent in scaling_shares(results, method).items():
            found.append(Target(f"{SCALING}_{method}_{workers}",
                                f"Масштабирование {method}, {workers} воркер(а), доля идеала",
                                percent, 95, True))
    healthz = results["healthz"]
    found += [
        Target("healthz_asyncio", "/healthz во время asyncio.sleep", healthz["asyncio"], 50,
               False, "мс"),
        Target("healthz_blocking", "/healthz во время time.sleep (урок)", healthz["blocking"],
               6000, True, "мс"),
    ]
    return found


def _mark(target: Target) -> str:
    return f"{target.wanted} {'✓' if target.met else '✗'}"


def _percent(value: float) -> str:
    """A share rounded down: a figure shown as the goal (95 %) has met it, 94.96 % shows 94 %."""
    return f"{math.floor(value)} %"


def _latency(figures: dict[str, float]) -> str:
    return f"{figures['p50_ms']:.1f} / {figures['p99_ms']:.1f}"


def markdown(results: Results) -> str:
    """The table docs/performance.md shows: the figure, its baseline from the same run, the target."""
    accept, e2e, healthz, memory = (
        results["accept"], results["e2e"], results["healthz"], results["memory"]
    )
    goals = {target.key: target for target in targets(results)}
    bare, publish = accept["bare"], accept["publish"]
    connections = results["settings"]["connections"]
    rows = [
        ("Замер", "Значение", "База в том же прогоне", "Доля базы", "Цель"),
        (f"Приём `POST /api/tasks` rmq, запросов/с ({connections} соединения)",
         f"{accept['rmq']['rate']:.0f}", f"{bare['rate']:.0f} (голый обработчик aiohttp)",
         _percent(share(accept["rmq"]["rate"], bare["rate"])),
         _mark(goals["accept_rmq"])),
        ("Приём rmq, p50 / p99, мс", _latency(accept["rmq"]),
         f"{_latency(bare)} (голый), {_latency(publish)} (только публикация)", "",
         _mark(goals["accept_rmq_p99"])),
        ("Приём celery, запросов/с", f"{accept['celery']['rate']:.0f}", f"{bare['rate']:.0f}",
         _percent(share(accept["celery"]["rate"], bare["rate"])),
         _mark(goals["accept_celery"])),
        ("Приём celery, p50 / p99, мс", _latency(accept["celery"]), _latency(bare), "", ""),
        ("Процессор API на запрос, мс: rmq / celery",
         f"{accept['rmq']['cpu_ms']:.2f} / {accept['celery']['cpu_ms']:.2f}",
         f"{bare['cpu_ms']:.3f} (голый обработчик)", "", ""),
        *_store_rows(results.get("stores"), accept["rmq"], bare),
        *_secure_rows(results.get("secure"), accept),
        (f"Только публикация aio-pika (до {connections} неподтверждённых), сообщений/с",
         f"{publish['rate']:.0f}", f"{bare['rate']:.0f}",
         _percent(share(publish["rate"], bare["rate"])), ""),
        ("Конец в конец rmq, задач/с (1 consumer, задачи без работы)", f"{e2e['rmq']:.0f}",
         f"{e2e['raw']:.0f} (брокер без API: публикация, чтение, ack)",
         _percent(share(e2e["rmq"], e2e["raw"])),
         _mark(goals["e2e_rmq"])),
        ("Конец в конец celery, задач/с (1 Celery worker)", f"{e2e['celery']:.0f}",
         f"{e2e['raw']:.0f}", _percent(share(e2e["celery"], e2e["raw"])), ""),
    ]
    for method, who in (("rmq", "consumer"), ("celery", "Celery worker")):
        rates = {int(n): rate for n, rate in results["scaling"][method].items()}
        percents = scaling_shares(results, method)
        label = f"Масштабирование {method}: 1 / 2 / 4 {who}, задач по 1 с в секунду"
        rows.append((
            label,
            " / ".join(f"{rates[n]:.2f}" for n in sorted(rates)),
            " / ".join(f"{ideal_rate(n):g}" for n in sorted(rates)) + f" (идеал {SLOTS_PER_WORKER}·N)",
            " / ".join(_percent(percents[n]) for n in sorted(rates)),
            "≥ 95 % " + ("✓" if all(p >= 95 for p in percents.values()) else "✗"),
        ))
    rows += [
        ("`/healthz` во время `asyncio.sleep(7)`, худший ответ, мс", f"{healthz['asyncio']:.0f}",
         "", "", _mark(goals["healthz_asyncio"])),
        ("`/healthz` во время `time.sleep(7)`, худший ответ, мс", f"{healthz['blocking']:.0f}",
         "", "", _mark(goals["healthz_blocking"])),
        (f"Память API (RSS) после {memory['accepted']} принятых задач, МиБ",
         f"{memory['after_mib']:.0f}", f"{memory['started_mib']:.0f} (сразу после старта)", "",
         f"не растёт: в памяти ≤ {memory['store_limit']} задач"),
    ]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("---" for _ in rows[0]) + " |")
    return "\n".join([machine_line(results["machine"]), "", *lines]) + "\n"


def _store_rows(stores: dict[str, dict[str, float]] | None, memory: dict[str, float],
                bare: dict[str, float]) -> list[tuple[str, ...]]:
    """Accepting with the tasks in Redis, one API process and two, beside the memory store
    (a results file of a run before the stage has none)."""
    if stores is None:
        return []
    rows = []
    for key, who in (("one", "1 процесс API"), ("two", "2 процесса API на одном порту")):
        figures = stores[key]
        rows.append((
            f"Приём rmq, задачи в Redis (TASK_STORE), {who}, запросов/с",
            f"{figures['rate']:.0f}",
            f"{memory['rate']:.0f} (задачи в памяти), {bare['rate']:.0f} (голый)",
            _percent(share(figures["rate"], bare["rate"])), "",
        ))
    rows.append((
        "Процессор на запрос, мс: API / Redis — задачи в памяти; в Redis, 1 API; в Redis, 2 API",
        " ; ".join([f"{memory['cpu_ms']:.2f}", *(
            f"{stores[key]['cpu_ms']:.2f} / {stores[key]['store_cpu_ms']:.2f}"
            for key in ("one", "two"))]),
        f"{bare['cpu_ms']:.3f} (голый обработчик)", "", "",
    ))
    return rows


def _secure_rows(secure: dict[str, dict[str, float]] | None,
                 accept: dict[str, Any]) -> list[tuple[str, ...]]:
    """Accepting with the production checklist on, beside the same path with it off (a results
    file of a run before the stage has none)."""
    if secure is None:
        return []
    rows = [(
        f"Приём {method}, защищённый режим (TLS, токен, лимит, JSON-логи), запросов/с;"
        " p50 / p99, мс",
        f"{secure[method]['rate']:.0f}; {_latency(secure[method])}",
        f"{accept[method]['rate']:.0f}; {_latency(accept[method])} (без защиты)",
        _percent(share(secure[method]["rate"], accept[method]["rate"])), "",
    ) for method in ("rmq", "celery")]
    if "tls_only" in secure:
        rows.append((
            "Приём rmq по частям: только TLS / только токен, лимит и JSON-логи, запросов/с",
            f"{secure['tls_only']['rate']:.0f} / {secure['guards_only']['rate']:.0f}",
            f"{accept['rmq']['rate']:.0f} (без защиты)",
            " / ".join(_percent(share(secure[part]["rate"], accept["rmq"]["rate"]))
                       for part in ("tls_only", "guards_only")), "",
        ))
    rows.append((
        "Процессор API на запрос в защищённом режиме, мс: rmq / celery",
        f"{secure['rmq']['cpu_ms']:.2f} / {secure['celery']['cpu_ms']:.2f}",
        f"{accept['rmq']['cpu_ms']:.2f} / {accept['celery']['cpu_ms']:.2f} (без защиты)", "", "",
    ))
    return rows


def machine_line(machine: dict[str, Any]) -> str:
    return (f"Машина: {machine['cores']} ядра, {machine['cpu']}; RabbitMQ {machine['rabbitmq']},"
            f" Python {machine['python']}, {machine['date']}.")


def plot(results: Results, path: Path) -> None:
    """Two panels: each path's share of its baseline with its target, and scaling against ideal."""
    # Imported here: the table needs no matplotlib, and the Docker image (without the dev
    # requirements) still runs `python -m bench --help`.
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    from matplotlib import pyplot

    shares = [t for t in targets(results) if t.unit == "%" and not t.key.startswith(SCALING)]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    names = [t.label.replace(", доля", "\nдоля") for t in shares]
    left.barh(names, [t.value for t in shares],
              color=["tab:green" if t.met else "tab:red" for t in shares])
    left.scatter([t.goal for t in shares], names, marker="|", s=600, color="black",
                 label="цель", zorder=3)
    left.invert_yaxis()
    left.set_xlabel("% от базы в том же прогоне")
    left.set_title("Пропускная способность относительно базы")
    left.legend(loc="lower right")
    for method, style in (("rmq", "o-"), ("celery", "s-")):
        rates = {int(n): rate for n, rate in results["scaling"][method].items()}
        right.plot(sorted(rates), [rates[n] for n in sorted(rates)], style, label=method)
    right.plot(WORKER_COUNTS, [ideal_rate(n) for n in WORKER_COUNTS], "k--", label=f"идеал {SLOTS_PER_WORKER}·N")
    right.set_xticks(WORKER_COUNTS)
    right.set_xlabel("воркеров (consumer или Celery worker)")
    right.set_ylabel("задач по 1 с в секунду")
    right.set_title("Масштабирование")
    right.legend()
    figure.suptitle(machine_line(results["machine"]), fontsize=9)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
