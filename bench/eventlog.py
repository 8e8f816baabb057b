"""Event-log figures: appends, batches, reads, wake-up latency, and a 1M-event rebuild.

Run: .venv/bin/python bench/eventlog.py [--events 1000000] [--trials 3]
Everything goes through the full stack (msgspec encode, projection update,
commit) in a temporary root. Figures are medians of several trials, since
this machine is shared and noisy. Targets (issue 2): >= 10,000 single
appends/s, >= 100,000 batched appends/s, rebuild of 1,000,000 events in
< 20 s with < 300 MB RSS, cross-process wake-up < 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from events import EventLog, replay, types as t  # noqa: E402
from events.log import WAL_AUTOCHECKPOINT_PAGES, connect  # noqa: E402
from tests.history import synthetic_history  # noqa: E402


def message(n: int) -> tuple[t.MessageReceived, str]:
    chat = f"local:chat{n % 200}"
    event = t.MessageReceived(chat_jid=chat, message_id=str(n), sender=f"u{n % 7}", sender_name="Alice",
                              content=f"@Andy what is on my calendar for day {n}?",
                              timestamp="2026-11-25T12:00:00.000Z", channel="local")
    return event, f"{chat}:{n}"


def single_appends(directory: Path, count: int, sync: str) -> float:
    log = EventLog(directory / f"single-{sync}.db", sync=sync)
    items = [message(n) for n in range(count)]
    started = time.perf_counter()
    for event, key in items:
        log.append(event, key=key)
    rate = count / (time.perf_counter() - started)
    log.close()
    return rate


def batched_appends(directory: Path, count: int, batch: int, mixed: bool) -> float:
    log = EventLog(directory / f"batch-{mixed}.db")
    items = list(synthetic_history(count)) if mixed else [message(n) for n in range(count)]
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        log.append_many(items[start : start + batch])
    rate = len(items) / (time.perf_counter() - started)
    log.close()
    return rate


def sqlite_floor(directory: Path, count: int, batch: int) -> float:
    """Plain sqlite3 inserts of pre-encoded rows into the same schema: the floor under us."""
    log = EventLog(directory / f"floor-{batch}.db")
    rows = [(e.stream, k, t.encode(e)) for e, k in (message(n) for n in range(count))]
    log.close()
    conn = connect(directory / f"floor-{batch}.db")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    sql = "INSERT INTO events (at, type, stream, key, data) VALUES ('2026-11-25T12:00:00.000Z', 'MessageReceived', ?, ?, ?)"
    started = time.perf_counter()
    for start in range(0, count, batch):
        if batch == 1:
            conn.execute(sql, rows[start])
        else:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows[start : start + batch])
            conn.execute("COMMIT")
    rate = count / (time.perf_counter() - started)
    conn.close()
    return rate


def reads(path: Path) -> float:
    log = EventLog(path)
    started = time.perf_counter()
    after, total = 0, 0
    while records := log.read_since(after, limit=1000):
        after = records[-1].seq
        total += len(records)
    rate = total / (time.perf_counter() - started)
    log.close()
    return rate


def wake_latency(path: Path, rounds: int, cross_process: bool) -> list[float]:
    """Seconds from an append (here or in a child process) to a follower seeing it."""
    log = EventLog(path)
    seen: dict[int, float] = {}
    stop = threading.Event()

    def follow() -> None:
        for record in log.follow(log.last_seq(), stop=stop, idle_timeout=5):
            seen[record.seq] = time.time()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(0.3)
    sent: dict[int, float] = {}
    if cross_process:
        code = (
            "import sys, time; from events import EventLog; from events import types as t\n"
            f"log = EventLog({str(path)!r})\n"
            f"for i in range({rounds}):\n"
            "    time.sleep(0.02); at = time.time()\n"
            "    seq = log.append(t.SessionCleared(folder='bench', reason=str(i))).seq\n"
            "    print(seq, at, flush=True)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        for line in out.stdout.split("\n"):
            if line:
                seq, at = line.split()
                sent[int(seq)] = float(at)
    else:
        for i in range(rounds):
            time.sleep(0.02)
            at = time.time()
            sent[log.append(t.SessionCleared(folder="bench", reason=str(i))).seq] = at
    deadline = time.time() + 5
    while len(seen) < len(sent) and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    log.close()
    return sorted(seen[seq] - at for seq, at in sent.items() if seq in seen)


def rebuild_in_child(path: Path) -> tuple[float, int, float]:
    """Rebuild in a fresh process: (seconds, events, peak RSS in MB)."""
    code = (
        "import resource, sys, time; from events import EventLog, replay\n"
        f"log = EventLog({str(path)!r})\n"
        "r = replay.rebuild(log)\n"
        "print(r.seconds, r.events, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    seconds, events, rss = out.stdout.split()
    return float(seconds), int(events), float(rss)


def fill(path: Path, count: int) -> int:
    log = EventLog(path)
    pending = []
    for item in synthetic_history(count, groups=200):
        pending.append(item)
        if len(pending) == 10_000:
            log.append_many(pending)
            pending.clear()
    log.append_many(pending)
    total = log.last_seq()
    log.close()
    return total


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the rebuild log")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-") as tmp:
        base = Path(tmp)
        med = lambda f: statistics.median(f() for _ in range(args.trials))  # noqa: E731

        def trial_dir() -> Path:
            return Path(tempfile.mkdtemp(dir=base))

        print(f"event log benchmark, medians of {args.trials} trials (python {sys.version.split()[0]})")
        single = med(lambda: single_appends(trial_dir(), 20_000, "normal"))
        floor1 = med(lambda: sqlite_floor(trial_dir(), 20_000, 1))
        print(f"single appends/s, synchronous=NORMAL (WAL): {single:>10,.0f}   target >= 10,000;"
              f" plain sqlite3 floor {floor1:,.0f} (ratio {single / floor1:.2f})")
        full = med(lambda: single_appends(trial_dir(), 3_000, "full"))
        print(f"single appends/s, synchronous=FULL (fsync):  {full:>10,.0f}   (power-loss durable)")
        for size in (1_000, 10_000):
            batch = med(lambda: batched_appends(trial_dir(), 200_000, size, mixed=False))
            floor = med(lambda: sqlite_floor(trial_dir(), 200_000, size))
            print(f"batched appends/s, messages, {size:,}/batch: {batch:>10,.0f}   target >= 100,000;"
                  f" plain sqlite3 floor {floor:,.0f} (ratio {batch / floor:.2f})")
        mixed = med(lambda: batched_appends(trial_dir(), 200_000, 1_000, mixed=True))
        print(f"batched appends/s, mixed history:             {mixed:>10,.0f}")

        for label, cross in (("same process", False), ("other process", True)):
            lat = wake_latency(trial_dir() / "wake.db", 200, cross)
            print(f"follow wake-up, {label:<13}: p50 {pct(lat, .5) * 1e3:6.2f} ms  p99 {pct(lat, .99) * 1e3:6.2f} ms"
                  f"  max {max(lat) * 1e3:6.2f} ms   target < 50 ms ({len(lat)} samples)")

        big = base / "big.db"
        started = time.perf_counter()
        total = fill(big, args.events)
        print(f"built a log of {total:,} events in {time.perf_counter() - started:.1f} s")
        print(f"reads/s (read_since, 1,000 per call, decoded): {med(lambda: reads(big)):>10,.0f}")
        seconds, events, rss = rebuild_in_child(big)
        print(f"replay --rebuild of {events:,} events: {seconds:.1f} s, peak RSS {rss:.0f} MB"
              "   target < 20 s, < 300 MB")
        log = EventLog(big)
        started = time.perf_counter()
        diffs = replay.check(log)
        print(f"replay --check (rebuilt == live): {'equal' if not diffs else diffs} "
              f"in {time.perf_counter() - started:.1f} s")
        log.close()


if __name__ == "__main__":
    main()
