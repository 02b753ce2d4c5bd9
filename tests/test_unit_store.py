"""Unit tests of api/store.py's task numbers: they never repeat, not even across restarts.

The stores themselves: tests/test_store.py, against the memory store and a real Redis."""

from __future__ import annotations

from pathlib import Path

from api.store import TaskNumbers


def test_numbers_start_at_one_and_increase_by_one(tmp_path: Path) -> None:
    numbers = TaskNumbers(tmp_path / "counter", block=10)

    assert [numbers.take() for _ in range(25)] == list(range(1, 26))


def test_the_counter_file_and_its_directory_are_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deeper" / "counter"

    TaskNumbers(path, block=10).take()

    assert path.read_text() == "10\n"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_a_new_allocator_continues_after_a_dropped_one(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    first = TaskNumbers(path, block=10)
    taken = [first.take() for _ in range(3)]
    del first  # a crash: no close, no flush, nothing but what is already on disk

    second = TaskNumbers(path, block=10)
    later = [second.take() for _ in range(3)]

    assert taken == [1, 2, 3]
    assert min(later) > max(taken)
    assert later == [11, 12, 13]  # the rest of the first block is wasted, never reused


def test_numbers_never_repeat_across_many_restarts(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    seen: list[int] = []
    for run in range(20):
        numbers = TaskNumbers(path, block=7)
        seen.extend(numbers.take() for _ in range(run % 9))

    assert seen == sorted(set(seen))


def test_a_restart_after_a_whole_block_continues_after_it(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    first = TaskNumbers(path, block=5)
    assert [first.take() for _ in range(5)] == [1, 2, 3, 4, 5]

    assert TaskNumbers(path, block=5).take() == 6


def test_the_file_holds_the_high_water_mark_of_the_reserved_block(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    numbers = TaskNumbers(path, block=10)
    marks = []
    for _ in range(25):
        numbers.take()
        marks.append(int(path.read_text()))

    assert marks == [10] * 10 + [20] * 10 + [30] * 5


def test_the_file_is_written_only_once_per_block(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    numbers = TaskNumbers(path, block=10)
    writes = 0
    for _ in range(35):
        numbers.take()
        # Remove the file after each take: it comes back only when take() writes it.
        if path.exists():
            writes += 1
            path.unlink()

    assert writes == 4  # at numbers 1, 11, 21 and 31


def test_a_clean_shutdown_continues_right_after_the_last_number(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    numbers = TaskNumbers(path)
    assert [numbers.take() for _ in range(3)] == [1, 2, 3]
    numbers.close()
    assert TaskNumbers(path).take() == 4


def test_closing_an_allocator_that_handed_out_nothing_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    first = TaskNumbers(path, block=10)
    first.take()
    TaskNumbers(path, block=10).close()  # a run that crashed-restarted and sent no task
    assert TaskNumbers(path, block=10).take() == 11


def test_an_empty_counter_file_starts_at_one(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    path.write_text("")

    assert TaskNumbers(path).take() == 1


def test_an_existing_counter_file_is_continued(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    path.write_text("41999\n")

    assert TaskNumbers(path).take() == 42000
