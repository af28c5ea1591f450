"""Reads (or, with --write, changes) a local D1 database file directly.

`wrangler d1 execute --local` opens the file in a second runtime that takes SQLite's write lock
for part of its run (and outlives the command by a little); a Worker write that meets the lock
fails (SQLITE_BUSY) and is answered 503. A read-only connection takes no write lock, so a test's
look at D1 cannot change what the Worker answers.

usage: d1.py DB_FILE [--write] SQL   prints the rows as a JSON array of objects
"""
import json
import sqlite3
import sys


def main(argv):
    write = "--write" in argv
    args = [a for a in argv if a != "--write"]
    if len(args) != 2:
        sys.exit(__doc__)
    path, sql = args
    if write:
        # Autocommit: the statement is its own transaction; wait out the Worker's lock.
        db = sqlite3.connect(path, timeout=10, isolation_level=None)
    else:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        cur = db.execute(sql)
        names = [d[0] for d in cur.description or []]
        rows = [dict(zip(names, (list(v) if isinstance(v, bytes) else v for v in row))) for row in cur]
    finally:
        db.close()
    json.dump(rows, sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main(sys.argv[1:])
