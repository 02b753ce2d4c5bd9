"""What a run means: the table of the ledger and the picture of the run, from its JSON alone
(``chaos/results/latest.json``), so that either can be made again from a saved run."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from chaos.load import IN_FLIGHT
from chaos.schedule import Kind

Results = dict[str, Any]

LABELS = {
    Kind.CONSUMER_KILL: "kill -9 consumer",
    Kind.WORKER_KILL: "kill -9 Celery worker целиком",
    Kind.POOL_KILL: "kill -9 процесса пула Celery",
    Kind.API_KILL: "kill -9 процесса API",
    Kind.BROKER_RESTART: "брокер: stop_app … start_app",
    Kind.NODE_KILL: "kill -9 узла кластера, запуск снова",
    Kind.REDIS_RESTART: "kill -9 Redis, запуск снова",
    Kind.WORKER_PAUSE: "SIGSTOP воркера дольше heartbeat, SIGCONT",
    Kind.API_BLACKHOLE: "порт API: iptables DROP",
}
COLORS = dict(zip(Kind, ("tab:blue", "tab:orange", "tab:olive", "tab:red", "tab:purple",
                         "tab:purple", "tab:brown", "tab:pink", "tab:gray"), strict=True))


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q % of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def durations(results: Results) -> list[float]:
    """Seconds from accepted to DONE or ERROR of each finished task, but those sent with fail:
    they wait out Celery's retries on purpose."""
    return [finished - created
            for _, _, fail, created, finished, *_ in results["tasks"]
            if finished is not None and not fail]


def fault_rows(results: Results) -> list[tuple[str, int, float]]:
    """Per kind: its label, how many times, and the seconds it lasted in all."""
    counts: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    for fault in results["faults"]:
        counts[fault["kind"]] += 1
        seconds[fault["kind"]] += fault["until"] - fault["at"]
    return [(LABELS[Kind(kind)], counts[kind], seconds[kind]) for kind in Kind if kind in counts]


def markdown(results: Results) -> str:
    settings, book = results["settings"], results["ledger"]
    tasks = results["tasks"]
    methods = Counter(method for _, method, *_ in tasks)
    answers = results["answers"]
    took = durations(results)
    slowest = max(((finished - created, number)
                   for number, _, fail, created, finished, *_ in tasks
                   if finished is not None and not fail), default=None)
    longest = "—" if slowest is None else f"{slowest[0]:.1f} с (задача {slowest[1]})"
    cluster = ", кластер из трёх узлов" if settings["cluster"] else ""
    rows = [
        ("Прогон", f"{settings['seconds'] / 60:g} мин нагрузки, {settings['rate']:g} задач/с "
                   f"(rmq и celery по очереди, работа {settings['work']:g} с, "
                   f"{settings['fail_share'] * 100:g} % с fail){cluster}; seed {settings['seed']}"),
        ("Принято задач (202)", f"{book['accepted']} (rmq {methods['rmq']}, "
                                f"celery {methods['celery']})"),
        (f"Ответы 503 / без ответа / не отправлено (ответа уже ждали {IN_FLIGHT} запроса)",
         f"{answers.get('503', 0)} / {answers.get('0', 0)} / {results['dropped']}"),
        ("Отказов", str(len(results["faults"]))),
        ("DONE / ERROR (ERROR — только задачи с fail)", f"{book['done']} / {book['error']}"),
        ("Не завершены (зависли)", str(len(book["stuck"]))),
        ("Приняты, но хранилище их не знает (потеряны)", str(len(book["lost"]))),
        ("DONE записан дважды", str(len(book["done_twice"]))),
        ("Выполнены больше одного раза (at-least-once)", str(len(book["ran_again"]))),
        ("Доставлены брокером повторно (`redeliveries` > 0)", str(len(book["redelivered"]))),
        ("Конец в конец p50 / p99 (без задач с fail)",
         f"{percentile(took, 50):.2f} / {percentile(took, 99):.1f} с" if took else "—"),
        ("Самая долгая задача конец в конец (без задач с fail)", longest),
        ("Всё завершилось после конца последнего отказа через", f"{results['recovered_in']:g} с"),
        *_unacknowledged_row(results.get("unacknowledged")),
    ]
    lines = ["| Что | Сколько |", "| --- | --- |", *(f"| {a} | {b} |" for a, b in rows)]
    lines += ["", "| Отказ | Раз | Длился, с всего |", "| --- | --- | --- |"]
    lines += [f"| {label} | {n} | {seconds:.0f} |" for label, n, seconds in fault_rows(results)]
    problems = book["problems"]
    verdict = ("Итог: каждая принятая задача учтена." if not problems
               else "Итог: ПРОВАЛ.\n\n" + "\n".join(f"- {problem}" for problem in problems))
    return "\n".join([*lines, "", verdict]) + "\n"


def _unacknowledged_row(found: dict[str, list[int]] | None) -> list[tuple[str, str]]:
    """Tasks the store has without a 202 to any client (a run saved before this has none)."""
    if found is None:
        return []
    unfinished = found["unfinished"]
    shown = ", ".join(map(str, unfinished[:10])) + (" ..." if len(unfinished) > 10 else "")
    return [("В хранилище без ответа 202 клиенту: завершены / не завершены",
             f"{len(found['finished'])} / {len(unfinished)}" + (f" ({shown})" if shown else ""))]


def plot(results: Results, path: Path) -> None:
    """Two panels on one time axis: tasks accepted and finished per second, and how long they
    took; every fault a band (or a line, if it was over at once) across both."""
    # Imported here: the table needs no matplotlib.
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    from matplotlib import pyplot

    ends = [task[4] for task in results["tasks"] if task[4] is not None]
    length = math.ceil(max([results["settings"]["seconds"], *ends]))
    accepted, finished = [0] * (length + 1), [0] * (length + 1)
    refused, unanswered = [0] * (length + 1), [0] * (length + 1)
    for _, _, _, created, done, *_ in results["tasks"]:
        accepted[max(0, int(created))] += 1
        if done is not None:
            finished[int(done)] += 1
    for sent, _, status in results["requests"]:
        if status == 503:
            refused[int(sent)] += 1
        elif status != 202:
            unanswered[int(sent)] += 1
    figure, (lanes, rate, latency) = pyplot.subplots(
        3, 1, figsize=(13, 9), sharex=True, layout="constrained",
        gridspec_kw={"height_ratios": [1.3, 2, 2]})
    seconds = list(range(length + 1))
    rate.step(seconds, accepted, where="post", color="tab:green", label="принято, задач/с")
    rate.step(seconds, finished, where="post", color="black", linewidth=0.8,
              label="завершено (DONE или ERROR), задач/с")
    rate.step(seconds, refused, where="post", color="tab:red", linewidth=0.8,
              label="ответ 503 (брокер или хранилище недоступны), в секунду")
    rate.step(seconds, unanswered, where="post", color="tab:gray", linewidth=0.8,
              linestyle="--", label="без ответа (по времени отправки), в секунду")
    rate.set_ylabel("задач в секунду")
    took = [(t[3], t[4] - t[3]) for t in results["tasks"] if t[4] is not None and not t[2]]
    latency.scatter([x for x, _ in took], [y for _, y in took], s=3, color="black",
                    label="конец в конец: от 202 до DONE (по созданию задачи)")
    answered = [(at, took) for at, took, status in results["requests"] if status == 202]
    latency.scatter([x for x, _ in answered], [y for _, y in answered], s=3, color="tab:green",
                    alpha=0.5, label="ответ на POST /api/tasks (202)")
    latency.set_yscale("log")
    latency.set_ylabel("секунд")
    latency.set_xlabel("секунды от начала нагрузки")
    # A lane for each kind of fault, a bar for each fault (a line if it was over at once); the
    # same times shaded lightly under the figures below.
    kinds = [kind for kind in Kind if kind in {fault["kind"] for fault in results["faults"]}]
    for fault in results["faults"]:
        kind = Kind(fault["kind"])
        lane, color = kinds.index(kind), COLORS[kind]
        took = max(fault["until"] - fault["at"], 0.3)
        lanes.broken_barh([(fault["at"], took)], (lane - 0.35, 0.7), color=color)
        for axis in (rate, latency):
            axis.axvspan(fault["at"], fault["at"] + took, color=color, alpha=0.15)
    lanes.set_yticks(range(len(kinds)), [LABELS[kind] for kind in kinds], fontsize=8)
    lanes.invert_yaxis()
    lanes.set_title("отказы", fontsize=9)
    rate.legend(loc="upper right", fontsize=8)
    latency.legend(loc="upper right", fontsize=8)
    settings = results["settings"]
    figure.suptitle(f"make chaos: {settings['seconds'] / 60:g} мин, {settings['rate']:g} задач/с,"
                    f" seed {settings['seed']}; {results['ledger']['accepted']} задач принято,"
                    f" {len(results['faults'])} отказов", fontsize=10)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
