"""The bench's own code: it reads wrk, computes ratios and targets, renders its table, and
cleans up after itself. Correctness only: no figure of a run is asserted here."""

from __future__ import annotations

import copy
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

import secure
from bench import raw, report, stages, wrk
from common.settings import LOCAL_REDIS_STORE, Settings
from runner.broker import management_url
from runner.polling import wait_for
from runner.procfile import ROOT

WRK_OUTPUT = """\
Running 8s test @ http://127.0.0.1:8080/api/tasks
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    30.12ms   12.40ms 250.00ms   91.00%
    Req/Sec     1.05k   120.00     1.30k    70.00%
  8400 requests in 8.00s, 2.10MB read
BENCH_RESULT {"requests": 8400, "duration_us": 8000000, "bad_status": 2, "socket_errors": 1, \
"p50_us": 28500, "p99_us": 62250}
Requests/sec:   1050.00
Transfer/sec:    268.80KB
"""


def test_wrk_result_is_read_from_the_scripts_line() -> None:
    result = wrk.parse(WRK_OUTPUT)
    assert result == wrk.LoadResult(rate=1050.0, p50_ms=28.5, p99_ms=62.25, requests=8400,
                                    errors=3)


def test_wrk_output_without_the_result_line_is_an_error_that_shows_it() -> None:
    with pytest.raises(ValueError, match="Requests/sec"):
        wrk.parse("Requests/sec:   1050.00\n")


def test_the_lua_script_carries_the_body_and_refuses_one_that_would_end_it() -> None:
    text = wrk.script("POST", '{"method": "rmq", "timeout": 0}')
    assert 'wrk.body = [[{"method": "rmq", "timeout": 0}]]' in text
    assert wrk.RESULT_MARK in text
    with pytest.raises(ValueError):
        wrk.script("POST", '{"a": [[1]]}')


def test_the_lua_script_sends_the_headers_it_is_given() -> None:
    text = wrk.script("POST", "{}", {"Authorization": "Bearer abc"})
    assert "wrk.headers[ [[Authorization]] ] = [[Bearer abc]]" in text
    with pytest.raises(ValueError):
        wrk.script("POST", "{}", {"Authorization": "Bearer ]]"})


def test_wrk_runs_the_script_against_the_bare_handler() -> None:
    # The real wrk and the real Lua script: the result line is there and every answer was a 202.
    with stages.bare_handler() as (url, pid):
        figures = stages.load(f"{url}/api/tasks", "{}", [pid], "bare handler", connections=2,
                              seconds=1)
    assert figures["rate"] > 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    # The handler's own CPU, not the machine's: well under a second per request.
    assert 0 < figures["cpu_ms"] < 1000


def test_a_failed_load_run_is_refused_not_reported() -> None:
    failed = wrk.LoadResult(rate=900, p50_ms=1, p99_ms=2, requests=9000, errors=5)
    with pytest.raises(RuntimeError, match="5 of 9000"):
        stages.checked(failed, "accept rmq")


@pytest.mark.parametrize(("q", "expected"), [(50, 5), (99, 10), (100, 10), (1, 1)])
def test_nearest_rank_percentile(q: float, expected: float) -> None:
    assert raw.percentile([10, 1, 9, 2, 8, 3, 7, 4, 6, 5], q) == expected


def test_completion_rate_uses_the_api_clock_from_first_accepted_to_last_finished() -> None:
    tasks = [
        {"created_at": 100.0, "finished_at": 101.0},
        {"created_at": 100.5, "finished_at": 104.0},
        {"created_at": 101.0, "finished_at": 102.0},
    ]
    assert stages.completion_rate(tasks) == pytest.approx(3 / 4)


RESULTS = {
    "machine": {"cores": 2, "cpu": "Test CPU", "rabbitmq": "3.10.8", "python": "3.11.7",
                "date": "2026-01-01"},
    "settings": {"connections": 32, "seconds": 8},
    "accept": {
        "bare": {"rate": 8000.0, "p50_ms": 3.0, "p99_ms": 12.0, "cpu_ms": 0.096},
        "publish": {"rate": 2500.0, "p50_ms": 9.0, "p99_ms": 40.0},
        "rmq": {"rate": 2400.0, "p50_ms": 12.0, "p99_ms": 45.0, "cpu_ms": 0.8},
        "celery": {"rate": 400.0, "p50_ms": 70.0, "p99_ms": 120.0, "cpu_ms": 2.2},
    },
    "stores": {
        "one": {"rate": 1600.0, "p50_ms": 18.0, "p99_ms": 60.0, "cpu_ms": 1.1,
                "store_cpu_ms": 0.2},
        "two": {"rate": 2000.0, "p50_ms": 15.0, "p99_ms": 55.0, "cpu_ms": 1.2,
                "store_cpu_ms": 0.2},
    },
    "secure": {
        "rmq": {"rate": 1800.0, "p50_ms": 16.0, "p99_ms": 50.0, "cpu_ms": 1.0},
        "celery": {"rate": 350.0, "p50_ms": 80.0, "p99_ms": 130.0, "cpu_ms": 2.5},
        "tls_only": {"rate": 2000.0, "p50_ms": 14.0, "p99_ms": 48.0, "cpu_ms": 0.9},
        "guards_only": {"rate": 2160.0, "p50_ms": 13.0, "p99_ms": 46.0, "cpu_ms": 0.9},
    },
    "e2e": {"raw": 1600.0, "rmq": 480.0, "celery": 150.0},
    "scaling": {"rmq": {"1": 2.97, "2": 5.9, "4": 11.2},
                "celery": {"1": 2.9, "2": 5.8, "4": 11.6}},
    "healthz": {"asyncio": 12.0, "blocking": 6990.0},
    "memory": {"store_limit": 10000, "accepted": 100000, "started_mib": 50.0, "full_mib": 60.0,
               "after_mib": 61.0},
}


def test_ratios_and_ideal_rates() -> None:
    assert report.share(480, 1600) == 30
    assert [report.ideal_rate(n) for n in report.WORKER_COUNTS] == [3, 6, 12]
    assert report.scaling_shares(RESULTS, "rmq") == pytest.approx({1: 99, 2: 98.333, 4: 93.333},
                                                                    abs=0.001)


def test_targets_compare_each_figure_with_its_goal() -> None:
    by_key = {target.key: target for target in report.targets(RESULTS)}
    assert by_key["accept_rmq"].value == 30
    assert by_key["accept_rmq"].met
    assert by_key["accept_rmq_p99"].met  # 45 ms < 50 ms
    assert not by_key["accept_celery"].met  # 5 % < 10 %
    assert by_key["e2e_rmq"].met  # 30 % >= 25 %
    assert not by_key["scaling_rmq_4"].met  # 93 %
    assert by_key["healthz_blocking"].met


def test_a_figure_exactly_at_its_limit() -> None:
    at_least = report.Target("x", "x", 25, 25, at_least=True)
    below = report.Target("p99", "p99", 50, 50, at_least=False, unit="мс")
    assert at_least.met and at_least.wanted == "≥ 25 %"
    assert not below.met and below.wanted == "< 50 мс"


def test_the_table_shows_each_figure_beside_its_baseline_and_target() -> None:
    table = report.markdown(RESULTS)
    lines = table.splitlines()
    assert lines[0].startswith("Машина: 2 ядра, Test CPU; RabbitMQ 3.10.8, Python 3.11.7")
    rows = [line for line in lines if line.startswith("|")]
    assert len({row.count("|") for row in rows}) == 1  # every row has every column
    # Each row, found by its label (the first row that has it), with its figures and baselines.
    expected = [
        ("rmq, запросов/с", "| 2400 | 8000 (голый обработчик aiohttp) | 30 % | ≥ 25 % ✓ |"),
        ("Масштабирование rmq", "| 99 % / 98 % / 93 % | ≥ 95 % ✗ |"),
        ("Процессор API на запрос", "| 0.80 / 2.20 | 0.096 (голый обработчик) |"),
        ("2 процесса API", "| 2000 | 2400 (задачи в памяти), 8000 (голый) | 25 % |"),
        ("Процессор на запрос, мс: API / Redis", "| 0.80 ; 1.10 / 0.20 ; 1.20 / 0.20 |"),
        ("Приём rmq, защищённый режим",
         "| 1800; 16.0 / 50.0 | 2400; 12.0 / 45.0 (без защиты) | 75 % |"),
        ("по частям", "| 2000 / 2160 | 2400 (без защиты) | 83 % / 90 % |"),
        ("в защищённом режиме", "| 1.00 / 2.50 | 0.80 / 2.20 (без защиты) |"),
    ]
    for label, cells in expected:
        row = next(row for row in rows if label in row)
        assert cells in row, (label, row)


def test_a_run_saved_before_the_stores_stage_still_renders() -> None:
    older = {name: value for name, value in RESULTS.items() if name not in ("stores", "secure")}
    assert "Redis" not in report.markdown(older)
    assert "защищённый" not in report.markdown(older)


def test_a_share_just_under_its_goal_is_not_shown_as_the_goal() -> None:
    # 11.39 of 12 tasks/s is 94.9 % of the ideal: rounded, it would read "95 % ... ✗".
    results = {**RESULTS, "scaling": {"rmq": {"1": 3, "2": 6, "4": 11.39},
                                      "celery": {"1": 3, "2": 6, "4": 12}}}
    scaling_rmq = next(row for row in report.markdown(results).splitlines()
                       if "Масштабирование rmq" in row)
    assert "| 100 % / 100 % / 94 % | ≥ 95 % ✗ |" in scaling_rmq


def test_the_table_is_the_same_from_the_saved_json() -> None:
    # latest.json is enough to render the table again.
    assert report.markdown(json.loads(json.dumps(RESULTS))) == report.markdown(RESULTS)


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "bench.png"
    report.plot(copy.deepcopy(RESULTS), path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# --- a tiny stage on the real broker leaves nothing behind ------------------------------------


def processes_in_vhost(vhost: str) -> list[int]:
    """Pids of processes whose environment names the vhost: the demo's services started there."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not a process
            continue
        if vhost.encode() in environ:
            pids.append(int(proc.name))
    return pids


def vhosts_on_broker(base_settings: Settings, management: requests.Session) -> set[str]:
    response = management.get(management_url(base_settings, "vhosts"), timeout=10)
    response.raise_for_status()
    return {vhost["name"] for vhost in response.json()}


def assert_cleaned_up(bench: stages.Bench) -> None:
    assert bench.vhosts
    assert not set(bench.vhosts) & vhosts_on_broker(bench.base, bench.management)
    for vhost in bench.vhosts:
        assert processes_in_vhost(vhost) == []


def test_a_tiny_end_to_end_stage_measures_and_cleans_up(
    base_settings: Settings, management: requests.Session
) -> None:
    bench = stages.Bench(base_settings, management)
    figures = stages.end_to_end(bench, tasks=20, in_flight=4)
    assert set(figures) == {"raw", "rmq", "celery"}
    assert all(rate > 0 for rate in figures.values())
    assert len(bench.vhosts) == 2  # one demo for each method
    assert_cleaned_up(bench)


def test_a_tiny_stores_stage_measures_two_apis_on_one_port_and_clears_its_tasks(
    base_settings: Settings, management: requests.Session
) -> None:
    bench = stages.Bench(base_settings, management)
    figures = stages.stores(bench, connections=2, seconds=1)
    assert set(figures) == {"one", "two"}
    assert all(f["rate"] > 0 and f["cpu_ms"] > 0 and f["store_cpu_ms"] >= 0
               for f in figures.values())
    assert_cleaned_up(bench)
    with redis.Redis.from_url(LOCAL_REDIS_STORE) as client:
        assert list(client.scan_iter(f"*{bench.vhosts[0]}*")) == []


def test_a_tiny_secure_stage_measures_over_tls_and_leaves_the_node_as_it_found_it(
    base_settings: Settings, management: requests.Session
) -> None:
    bench = stages.Bench(base_settings, management)
    was_running = secure.node_running()

    figures = stages.secure_mode(bench, connections=2, seconds=1)

    assert set(figures) == {"rmq", "celery", "tls_only", "guards_only"}
    assert all(f["rate"] > 0 and f["cpu_ms"] > 0 for f in figures.values())
    assert secure.node_running() == was_running
    assert_cleaned_up(bench)  # the guards' demo ran in a vhost of its own


def test_a_stage_that_fails_midway_still_cleans_up(
    base_settings: Settings, management: requests.Session
) -> None:
    bench = stages.Bench(base_settings, management)
    with pytest.raises(RuntimeError, match="midway"), bench.demo() as demo:
        demo.start_workers("consumer", 1)
        assert processes_in_vhost(bench.vhosts[0])  # the check sees the running services
        raise RuntimeError("midway")
    assert_cleaned_up(bench)


@pytest.mark.parametrize(
    ("argument", "complaint"),
    [("--seconds=0", "must be from 1 to 60, not 0"), ("--seconds=2.5", "'2.5' is not a whole"),
     ("--connections=-3", "must be from 1 to 1000"), ("--tasks=many", "'many' is not a whole")],
)
def test_a_bad_argument_is_refused_before_anything_starts(argument: str, complaint: str) -> None:
    run = subprocess.run([sys.executable, "-m", "bench", argument], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert f"argument {argument.split('=')[0]}: {complaint}" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_stops_its_processes_and_deletes_its_vhost(
    signum: signal.Signals, base_settings: Settings, management: requests.Session, tmp_path: Path
) -> None:
    log_path = tmp_path / "bench.log"
    with log_path.open("wb") as output:
        run = subprocess.Popen(
            [sys.executable, "-m", "bench", "--seconds=1", f"--output={tmp_path}"],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        # Interrupted while the first demo runs: its api is up in the vhost the run logged.
        vhost = wait_for(lambda: re.search(r"demo in vhost (\S+)", log_path.read_text()), 60,
                         what="the bench to start a demo").group(1)
        wait_for(lambda: processes_in_vhost(vhost), 30, what="the demo's api to start")
        run.send_signal(signum)
        assert run.wait(60) != 0
    finally:
        if run.poll() is None:  # the signal was lost: SIGTERM still stops what the run started
            run.terminate()
            try:
                run.wait(60)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
    assert vhost not in vhosts_on_broker(base_settings, management), log_path.read_text()
    assert processes_in_vhost(vhost) == []
    assert not (tmp_path / "latest.json").exists()
