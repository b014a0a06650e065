"""Two `mnistlite search` workers on one PostgreSQL study through a fast restart, an immediate restart
and an outage, each while trials train; then the checks of issue 39 and a per-trial table.

    python benchmarks/chaos_pg.py [--out FILE] [--trials 6] [--outage 20] [--heartbeat 25]

It initdb's and starts a PostgreSQL server of its own on a free loopback port (Debian's
/usr/lib/postgresql/*/bin; as root the server runs as the `postgres` user), and deletes it at the end.
MNIST comes from $MNISTLITE_DATA or --data-dir. Prints, and with --out writes, the worker command,
the faults with their times, one row per trial, the exit codes and the checks; exits 0 only when every
check holds, 1 when one fails, 2 on bad arguments or a missing server.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
sys.path.insert(0, str(REPO / "src"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A throw-away PostgreSQL server driven by pg_ctl (restart -m fast / -m immediate, stop, start)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            print("chaos_pg: PostgreSQL server binaries not found (apt-get install postgresql)", file=sys.stderr)
            sys.exit(2)
        self.bindir = Path(found[-1]).parent
        self.as_user: dict = {}
        if os.geteuid() == 0:  # the server refuses to run as root
            import pwd

            pw = pwd.getpwnam("postgres")
            self.as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": {"PATH": "/usr/bin:/bin"}}
        self.root = Path(tempfile.mkdtemp(prefix="mnistlite-chaos-"))
        if self.as_user:
            os.chown(self.root, self.as_user["user"], self.as_user["group"])
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/chaos"
        self.run("initdb", "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.ctl("start")
        self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-qc", "CREATE DATABASE chaos")

    def run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bindir / tool), *args], capture_output=True, text=True, cwd=self.root, **self.as_user
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {done.stderr.strip()}")

    def ctl(self, *args: str) -> float:
        """pg_ctl ARGS, waiting for it to finish; the seconds it took."""
        t0 = time.monotonic()
        opts = f"-k {self.root} -h 127.0.0.1 -p {self.port} -c fsync=off -c max_connections=100"
        self.run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w", "-o", opts, *args)
        return time.monotonic() - t0

    def close(self) -> None:
        try:
            self.ctl("stop", "-m", "immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def trials_now(url: str, study: str) -> list:
    import optuna

    from mnistlite.runs.storage import normalize_url

    try:
        return optuna.load_study(study_name=study, storage=normalize_url(url)).get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001  (no study yet, or the server between restarts)
        return []


def wait_training(url: str, study: str, n_complete: int, n_trials: int, timeout: float = 300) -> None:
    """Until `n_complete` trials are COMPLETE and a worker is training another (or all are done)."""
    from optuna.trial import TrialState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ts = trials_now(url, study)
        done = sum(t.state == TrialState.COMPLETE for t in ts)
        if done >= n_trials or (
            done >= n_complete and any(t.state == TrialState.RUNNING and "worker" in t.user_attrs for t in ts)
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("the workers never started training")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="also write the report to this file")
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--outage", type=float, default=20.0, help="seconds the server is down (default 20)")
    p.add_argument("--heartbeat", type=int, default=25, help="--heartbeat of the workers (default 25: grace 50 s)")
    p.add_argument("--data-dir", default=os.environ.get("MNISTLITE_DATA"))
    a = p.parse_args()
    if a.trials < 3 or a.outage <= 0 or a.heartbeat < 1 or not a.data_dir:
        p.error("--trials >= 3, --outage > 0, --heartbeat >= 1 and a --data-dir (or $MNISTLITE_DATA) are needed")
    import optuna
    from optuna.trial import TrialState

    from mnistlite.runs.storage import normalize_url
    from mnistlite.search.study import counted_trials, is_counted

    server = Server()
    work = Path(tempfile.mkdtemp(prefix="mnistlite-chaos-out-"))
    lines: list[str] = []
    say = lines.append
    try:
        say(f"$ python benchmarks/chaos_pg.py {' '.join(sys.argv[1:])}")
        say(f"PostgreSQL {server.bindir.parent.name}, loopback; {os.cpu_count()} cores; optuna {optuna.__version__}")
        flags = ["search", "--storage", server.url, "--study", "chaos", "--trials", str(a.trials), "--epochs", "2"]
        flags += [
            "--limit-train",
            "3000",
            "--val-size",
            "500",
            "--heartbeat",
            str(a.heartbeat),
            "--startup-trials",
            "2",
        ]
        flags += ["--pruner", "none", "--storage-patience", "120", "--data-dir", a.data_dir]
        say("worker command (x2, each with its own --out and --sampler-seed 0 / 1):")
        say("  python -m mnistlite " + " ".join(flags).replace(a.data_dir, "$MNISTLITE_DATA"))
        t0, t0_wall = time.monotonic(), datetime.now()
        logs = [open(work / f"w{i}.log", "w+") for i in range(2)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "mnistlite", *flags, "--out", str(work / f"w{i}"), "--sampler-seed", str(i)],
                env=ENV,
                cwd=REPO,
                stdout=logs[i],
                stderr=subprocess.STDOUT,
            )
            for i in range(2)
        ]
        spans: list[tuple[str, float, float]] = []
        faults = (
            ("pg_ctl restart -m fast", 0, lambda: server.ctl("restart", "-m", "fast")),
            ("pg_ctl restart -m immediate", 1, lambda: server.ctl("restart", "-m", "immediate")),
            (f"down {a.outage:g} s (stop -m fast, sleep, start)", 2, None),
        )
        for what, after, act in faults:
            wait_training(server.url, "chaos", after, a.trials)
            time.sleep(0.5)  # inside the trial's training
            at = time.monotonic() - t0
            if act is None:
                server.ctl("stop", "-m", "fast")
                time.sleep(a.outage)
                server.ctl("start")
            else:
                act()
            spans.append((f"f{len(spans) + 1}", at, time.monotonic() - t0))
            say(f"f{len(spans)} at {at:6.1f} s, {spans[-1][2] - at:4.1f} s long: {what}")
        codes = [proc.wait(timeout=900) for proc in procs]
        wall = time.monotonic() - t0
        outs = []
        for f in logs:
            f.seek(0)
            outs.append(f.read())
            f.close()
        trials = trials_now(server.url, "chaos")
        study = optuna.load_study(study_name="chaos", storage=normalize_url(server.url))
        say(f"both workers done after {wall:.1f} s; exit codes {codes[0]} and {codes[1]}")
        say("")
        say("trial  state     val%   counted  retry_of  started_s  took_s  worker  (s since the workers started)")
        workers = sorted({t.user_attrs.get("worker", "") for t in trials} - {""})
        for t in trials:
            began = (t.datetime_start - t0_wall).total_seconds()
            took = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else float("nan")
            during = [f for f, at, end in spans if began < end and began + took > at]
            val = f"{t.value:6.2f}" if t.value is not None else "     -"
            who = f"w{workers.index(t.user_attrs['worker'])}" if "worker" in t.user_attrs else "-"
            note = " (over budget)" if "rejected" in t.user_attrs else " (surplus)" if "surplus" in t.user_attrs else ""
            say(
                f"{t.number:5d}  {t.state.name:8s} {val}   {'yes' if is_counted(t) else 'no':7s}  "
                f"{t.system_attrs.get('failed_trial', '-')!s:8s}  {began:9.1f}  {took:6.1f}  {who}{note}"
                + (f"  trained through {', '.join(during)}" if during and is_counted(t) else "")
            )
        for i, out in enumerate(outs):
            say("")
            say(f"worker w{i} outage lines:")
            for line in out.splitlines():
                if line.startswith("database "):
                    say(f"  {line}")
        counted = counted_trials(study)
        retried = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
        left = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        checks = {
            "both workers exit 0": codes == [0, 0],
            "no Traceback in either worker's output": not any("Traceback" in o for o in outs),
            f"exactly {a.trials} counted trials": len(counted) == a.trials,
            "no config counted twice": len({repr(sorted(t.params.items())) for t in counted}) == len(counted),
            "nothing left RUNNING or WAITING": not left,
            "a retried trial is FAIL with no value": all(
                trials[n].state == TrialState.FAIL and trials[n].value is None for n in retried
            ),
            "every worker saw the outages (one line each way)": all("database back after" in o for o in outs),
        }
        say("")
        for name, ok in checks.items():
            say(f"{'PASS' if ok else 'FAIL'}  {name}")
        if not all(checks.values()):
            for i, out in enumerate(outs):
                say(f"---- worker w{i} output ----\n{out}")
        return 0 if all(checks.values()) else 1
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
        text = "\n".join(lines) + "\n"
        print(text, end="")
        if a.out:
            a.out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
