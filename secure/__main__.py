"""``python -m secure [--rotate] [NAME...]``: the secure mode's files in .secure/ (see secure/)."""

from __future__ import annotations

import argparse
import logging

from secure import SECURE_DIR, ensure


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m secure", description=__doc__)
    parser.add_argument("--rotate", action="store_true",
                        help="new broker password, API_TOKEN and CALLBACK_TOKEN")
    parser.add_argument("names", nargs="*",
                        help="more host names or addresses for the broker's certificate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ensure(SECURE_DIR, rotate=args.rotate, names=tuple(args.names))
    logging.info("secure: files in %s", SECURE_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
