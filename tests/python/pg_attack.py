"""psycopg against `opslake serve`, for the security tests: what a hostile or careless client does.

Usage: pg_attack.py MODE PORT USER PASSWORD [ARG]
Modes, each printing one JSON document on stdout:
  extended   reads a JSON list of SQL on stdin; runs each as a prepared statement (Parse/Bind/
             Execute) on one autocommit connection: [{"sql", "sqlstate", "rows"}]
  cursor     reads a JSON list of queries; declares each through a named (server-side) cursor,
             as psycopg's ServerCursor does, and fetches: [{"sql", "sqlstate"}]
  isolation  what one connection's SET does to another: {"a": ..., "b": ...}
  cap ARG    opens ARG connections and holds them, then one more: {"held", "extra", "after_close"}
  load ARG   ARG threads, each on its own connection running a heavy query, and a probe that
             connects and runs SELECT 1 while they run and after: {"outcomes", "probe_during", ...}
A sqlstate is null when the statement ran. Bounded: every connection has a timeout, every loop
a count.
"""

import json
import sys
import threading
import time

import psycopg


def connect(port, user, password, **kw):
    return psycopg.connect(
        host="127.0.0.1", port=int(port), user=user, password=password, dbname="opslake",
        sslmode="disable", connect_timeout=20, autocommit=True, **kw,
    )


def state(e):
    return getattr(e, "sqlstate", None) or type(e).__name__


def run(cur, sql, **kw):
    try:
        cur.execute(sql, **kw)
        rows = cur.fetchall() if cur.description else []
        return None, [[None if v is None else str(v) for v in r] for r in rows]
    except psycopg.Error as e:
        return state(e), str(e).strip().splitlines()[0] if str(e).strip() else ""


def extended(port, user, password):
    out = []
    with connect(port, user, password) as conn:
        for sql in json.load(sys.stdin):
            with conn.cursor() as cur:
                code, rows = run(cur, sql, prepare=True)
                out.append({"sql": sql, "sqlstate": code, "rows": rows})
    return out


def cursor(port, user, password):
    out = []
    with connect(port, user, password) as conn:
        for i, sql in enumerate(json.load(sys.stdin)):
            conn.autocommit = False
            try:
                with conn.cursor(name=f"c{i}") as cur:
                    cur.execute(sql)
                    cur.fetchall()
                conn.commit()
                out.append({"sql": sql, "sqlstate": None})
            except psycopg.Error as e:
                out.append({"sql": sql, "sqlstate": state(e)})
                conn.rollback()
    return out


def isolation(port, user, password):
    a, b = connect(port, user, password), connect(port, user, password)
    result = {"a": {}, "b": {}}
    with a.cursor() as ca, b.cursor() as cb:
        result["a"]["set_server_setting"], _ = run(ca, "SET datafusion.execution.batch_size = 1")
        result["a"]["set_time_zone"], _ = run(ca, "SET TIME ZONE 'Asia/Tokyo'")
        result["a"]["set_timeout"], _ = run(ca, "SET statement_timeout = 1")
        _, rows = run(ca, "SHOW TimeZone")
        result["a"]["time_zone"] = rows
        _, rows = run(cb, "SHOW TimeZone")
        result["b"]["time_zone"] = rows
        heavy = "SELECT count(*) FROM generate_series(1, 300000000) t(x)"
        result["a"]["heavy"], _ = run(ca, heavy)
        result["b"]["light"], rows = run(cb, "SELECT count(*) FROM generate_series(1, 1000) t(x)")
        result["b"]["light_rows"] = rows
    a.close()
    b.close()
    return result


def cap(port, user, password, n):
    held = []
    for _ in range(int(n)):
        held.append(connect(port, user, password))
    result = {"held": len(held)}
    try:
        connect(port, user, password).close()
        result["extra"] = None
    except psycopg.Error as e:
        result["extra"] = state(e)
        result["extra_message"] = str(e)
    held.pop().close()
    time.sleep(0.5)
    try:
        with connect(port, user, password) as c, c.cursor() as cur:
            result["after_close"], _ = run(cur, "SELECT 1")
    except psycopg.Error as e:
        result["after_close"] = state(e)
    for c in held:
        c.close()
    return result


HEAVY = [
    # Working memory: a sort of a cross join of the demo's people.
    "SELECT a.email, b.email FROM crm.people a, crm.people b, crm.people c ORDER BY 1, 2",
    # Time: ten billion rows of a cross join.
    "SELECT count(*) FROM generate_series(1, 100000) a(x), generate_series(1, 100000) b(y)",
    # Time, and memory it may spill: a hash of every distinct value.
    "SELECT count(DISTINCT x) FROM generate_series(1, 40000000) t(x)",
]


def probe(port, user, password):
    started = time.monotonic()
    try:
        with connect(port, user, password) as c, c.cursor() as cur:
            code, rows = run(cur, "SELECT 1")
            return {"sqlstate": code, "rows": rows, "seconds": round(time.monotonic() - started, 2)}
    except psycopg.Error as e:
        return {"sqlstate": state(e), "seconds": round(time.monotonic() - started, 2)}


def load(port, user, password, n):
    # Alone first, so its working memory, not its time, is what it runs out of.
    with connect(port, user, password) as c, c.cursor() as cur:
        alone, _ = run(cur, HEAVY[0])
    outcomes = [None] * int(n)

    def worker(i):
        try:
            with connect(port, user, password) as c, c.cursor() as cur:
                code, _ = run(cur, HEAVY[i % len(HEAVY)])
                outcomes[i] = code or "ok"
        except psycopg.Error as e:
            outcomes[i] = "connect:" + state(e)
        except Exception as e:  # a dropped connection is what the test looks for
            outcomes[i] = "other:" + type(e).__name__

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(int(n))]
    for t in threads:
        t.start()
    time.sleep(3)
    during = probe(port, user, password)
    for t in threads:
        t.join(timeout=120)
    after = probe(port, user, password)
    counts = {}
    for o in outcomes:
        counts[str(o)] = counts.get(str(o), 0) + 1
    return {"alone": alone, "outcomes": counts, "probe_during": during, "probe_after": after,
            "unfinished": sum(t.is_alive() for t in threads)}


def main():
    mode, port, user, password = sys.argv[1:5]
    arg = sys.argv[5] if len(sys.argv) > 5 else None
    result = {
        "extended": lambda: extended(port, user, password),
        "cursor": lambda: cursor(port, user, password),
        "isolation": lambda: isolation(port, user, password),
        "cap": lambda: cap(port, user, password, arg),
        "load": lambda: load(port, user, password, arg),
    }[mode]()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
