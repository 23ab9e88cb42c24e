#!/usr/bin/env python3
"""What `kill -9` costs the watch log without `--durable-log`.

Starts `sage-stream serve` on 127.0.0.1 (SQLite by default, or the
PostgreSQL URL in DATABASE), drives it with ranged GETs from several
processes, each request with a User-Agent of its own, kills the server with
SIGKILL in the middle of the load, and compares the responses the clients
had completed (with the wall-clock time each completed) with the rows the
database holds after a restart has replayed the spool file the killed
server left (and a graceful stop). A completed response whose row is missing was
lost; the loss window of a run is the kill time minus the completion time
of the oldest lost response (rows are stored in order, so every response
after it is lost too). The row is made as the server ends the response, a
moment before the client has its last byte, so the window is measured a
little short (by the loopback's latency, well under a millisecond).

    python3 bench/kill9_loss.py                        # 7 runs, SQLite, target/release/sage-stream
    BIN=/path/sage-stream RUNS=10 LOAD=3 python3 bench/kill9_loss.py
    DATABASE=postgres://postgres@127.0.0.1:5432/k9 python3 bench/kill9_loss.py

Prints one line per run and a summary (stdout). Needs python3 and, for
PostgreSQL, psql.
"""

import http.client
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
BIN = os.environ.get("BIN", os.path.join(TARGET, "release", "sage-stream"))
RUNS = int(os.environ.get("RUNS", "7"))
# Seconds of load before the kill (the kill lands at a random moment in the
# last second of it).
LOAD = float(os.environ.get("LOAD", "3"))
PROCS = int(os.environ.get("PROCS", "4"))
THREADS = int(os.environ.get("THREADS", "4"))
DATABASE = os.environ.get("DATABASE", "")
FLAGS = os.environ.get("FLAGS", "--no-access-log").split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(port, tag, stop_at, out):
    """Ranged GETs on one keep-alive connection per thread until `stop_at`
    or the server dies; sends (user agent, completion time) pairs to `out`."""
    done = []
    lock = threading.Lock()

    def worker(t):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        i = 0
        mine = []
        while time.time() < stop_at:
            agent = f"k9-{tag}-{t}-{i}"
            i += 1
            start = random.randrange(0, 1_000_000 - 4096)
            try:
                conn.request(
                    "GET",
                    "/api/stream?path=clip.bin",
                    headers={"Range": f"bytes={start}-{start + 4095}", "User-Agent": agent},
                )
                res = conn.getresponse()
                body = res.read()
                if res.status == 206 and len(body) == 4096:
                    mine.append((agent, time.time()))
            except (OSError, http.client.HTTPException):
                break
        with lock:
            done.extend(mine)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(done)


def stored_agents(db_url, db_path):
    if db_url.startswith("postgres"):
        out = subprocess.run(
            ["psql", db_url, "-Atc", "select user_agent from watch_logs"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return set(out.split())
    con = sqlite3.connect(db_path)
    try:
        return {row[0] for row in con.execute("select user_agent from watch_logs")}
    finally:
        con.close()


def reset_postgres(db_url):
    subprocess.run(
        ["psql", db_url, "-qc", "drop table if exists watch_logs, watch_log_batches, __diesel_schema_migrations cascade"],
        check=True,
        capture_output=True,
    )


def start(root, db_url, port, spool):
    server = subprocess.Popen(
        [BIN, "serve", "--root", root, "--database", db_url, "--bind", f"127.0.0.1:{port}",
         "--spool", spool, *FLAGS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            pass
        if time.time() > deadline:
            server.kill()
            sys.exit("the server did not become ready")
        time.sleep(0.05)


def one_run(n, workdir):
    root = os.path.join(workdir, "media")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "clip.bin"), "wb") as f:
        f.write(os.urandom(1_000_000))
    db_path = os.path.join(workdir, f"log{n}.db")
    db_url = DATABASE or f"sqlite://{db_path}"
    if DATABASE:
        reset_postgres(DATABASE)
    port = free_port()
    spool = os.path.join(workdir, f"log{n}.spool")
    server = start(root, db_url, port, spool)
    out = multiprocessing.Queue()
    stop_at = time.time() + LOAD + 2
    procs = [multiprocessing.Process(target=client, args=(port, f"{n}.{p}", stop_at, out)) for p in range(PROCS)]
    started = time.time()
    for p in procs:
        p.start()
    time.sleep(LOAD - random.random())
    killed_at = time.time()
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    completed = []
    for _ in procs:
        completed.extend(out.get())
    for p in procs:
        p.join()
    # The next start replays what the killed one left in its spool file (a
    # kill -9 does not take what was written there); a graceful stop then
    # drains it.
    again = start(root, db_url, port, spool)
    again.send_signal(signal.SIGTERM)
    again.wait(timeout=60)
    stored = stored_agents(db_url, db_path)
    lost = [(t, a) for a, t in completed if a not in stored]
    window_ms = (killed_at - min(lost)[0]) * 1000 if lost else 0.0
    rate = len(completed) / (killed_at - started)
    return len(completed), len(lost), window_ms, rate


def main():
    if not os.access(BIN, os.X_OK):
        sys.exit(f"no binary at {BIN} (cargo build --release, or set BIN)")
    workdir = tempfile.mkdtemp(prefix="sage-k9-")
    results = []
    try:
        for n in range(RUNS):
            completed, lost, window, rate = one_run(n, workdir)
            results.append((completed, lost, window, rate))
            print(f"run {n + 1}: {completed} responses (~{rate:.0f}/s), {lost} rows lost, window {window:.0f} ms", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    windows = sorted(r[2] for r in results)
    print(
        f"{RUNS} runs, {'PostgreSQL' if DATABASE else 'SQLite'}: window median {windows[len(windows) // 2]:.0f} ms, "
        f"max {windows[-1]:.0f} ms; rows lost max {max(r[1] for r in results)}"
    )


if __name__ == "__main__":
    main()
