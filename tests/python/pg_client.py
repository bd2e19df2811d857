"""A Python client of `opslake serve`, for the serve test: psycopg, as an application would use it.

Usage: pg_client.py PORT USER PASSWORD SQL [PARAM...]
Prints the rows as CSV lines (no header), or `auth failed: <message>` with exit code 3 when the
server refuses the password. Extended protocol (server-side parameters) on purpose: psql covers
the simple one.
"""

import csv
import sys

import psycopg


def main() -> int:
    port, user, password, sql = sys.argv[1:5]
    params = sys.argv[5:]
    try:
        conn = psycopg.connect(
            host="127.0.0.1", port=int(port), user=user, password=password, dbname="opslake", sslmode="disable"
        )
    except psycopg.OperationalError as e:
        print(f"auth failed: {e}")
        return 3
    with conn:
        with conn.cursor() as cur:
            cur.execute(sql, params or None, prepare=True)
            writer = csv.writer(sys.stdout, lineterminator="\n")
            for row in cur.fetchall():
                writer.writerow(["" if v is None else v for v in row])
    return 0


if __name__ == "__main__":
    sys.exit(main())
