"""The course's catalogue for the synchronous modes: what the server "looks up" and returns."""

ITEMS: dict[int, str] = {
    10: "Тарелка",
    11: "Ложка",
    12: "Стакан",
    13: "Чашка",
    14: "Кастрюля",
    15: "Вилка",
    16: "Стол",
}

# The long synchronous request answers after this many seconds: the blocking lesson.
LONG_REQUEST_SECONDS = 7.0
