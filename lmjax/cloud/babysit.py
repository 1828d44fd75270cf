"""Keeps a command running on a TPU slice until it succeeds, recovering from what really
happens to slices: preemption, a failed or interrupted setup, a worker that dies while the
others hang, and a queued resource that never becomes ACTIVE.

Each attempt (1) brings the slice up: a missing slice is created, a dead one (SUSPENDED,
PREEMPTED, FAILED, ... from `commands.state_command`) deleted and recreated, a provisioning one
waited for, at most `max_wait_seconds`, after which babysit stops with a message, since a
queue that has not granted the slice in that time will not do better on a retry; (2) runs the
setup on a slice it has not yet set up successfully in this session, so a failed or interrupted
setup is re-run (setup is idempotent: it reinstalls the same thing); (3) runs the command and
watches it: the run directory's heartbeats (`heartbeats/process-<i>.json`, written by every
training process at each log) older than `stale_after_seconds` mean a worker died and the
others wait for it, so the command is killed on every worker and the attempt fails. A failed
attempt is logged with its cause, then retried after an exponential back-off. The command is
relaunched with the same run id and run directory, so `lmjax train` and `lmjax sweep run` resume
from their checkpoints. The runner, `start`, `heartbeats`, `sleep` and `clock` are injected:
tests drive the whole loop with scripted fakes.
"""

from __future__ import annotations

import collections
import dataclasses
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from lmjax.cloud import commands
from lmjax.cloud.launcher import Runner
from lmjax.cloud.spec import TpuSpec, TpuTarget


@dataclasses.dataclass(frozen=True)
class BabysitPolicy:
    max_attempts: int = 10  # runs of the command, each on a healthy (maybe recreated) slice
    backoff_seconds: float = 60.0  # before attempt n (n >= 2): backoff * 2**(n-2), capped
    max_backoff_seconds: float = 1800.0
    poll_seconds: float = 60.0  # between state checks while provisioning, heartbeat checks while running
    max_wait_seconds: float = 6 * 3600.0  # a queued slice not ACTIVE by then ends the babysitting
    stale_after_seconds: float = 1800.0  # a heartbeat this old: the workers stopped progressing


class Process(Protocol):
    """The running command: `subprocess.Popen` is one."""

    def poll(self) -> int | None: ...

    def kill(self) -> None: ...

    def wait(self) -> int: ...


Heartbeats = Callable[[], dict[str, float]]  # worker -> wall time of its last heartbeat


def start_process(argv: Sequence[str]) -> Process:
    return subprocess.Popen(list(argv))


def no_heartbeats() -> dict[str, float]:
    return {}


@dataclasses.dataclass
class BabysitOutcome:
    succeeded: bool
    attempts: int
    recreations: int  # slices created by the babysitter
    events: list[str]
    summary: str = ""


class _Failed(Exception):
    """An attempt failed; the message is its cause. `final`: retrying will not help."""

    def __init__(self, cause: str, final: bool = False):
        super().__init__(cause)
        self.final = final


@dataclasses.dataclass
class _Session:
    spec: TpuSpec
    runner: Runner
    policy: BabysitPolicy
    start: Callable[[Sequence[str]], Process]
    heartbeats: Heartbeats
    stop: list[str]
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    log: Callable[[str], None]
    events: list[str] = dataclasses.field(default_factory=list)
    recreations: int = 0
    set_up: bool = False  # the setup succeeded on the current slice

    def note(self, message: str) -> None:
        self.events.append(message)
        self.log(f"lmjax tpu babysit: {message}")

    def state(self) -> str:
        """The queued resource's state, or "" when it does not exist (describe failed)."""
        result = self.runner(commands.state_command(self.spec.target), capture=True)
        return result.stdout.strip().upper() if result.returncode == 0 else ""


def babysit(
    spec: TpuSpec,
    setup: Sequence[Sequence[str]],
    run: Sequence[str],
    runner: Runner,
    policy: BabysitPolicy = BabysitPolicy(),
    *,
    start: Callable[[Sequence[str]], Process] = start_process,
    heartbeats: Heartbeats = no_heartbeats,
    stop: Sequence[str] = (),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    log: Callable[[str], None] = print,
) -> BabysitOutcome:
    """Runs `run` on the slice until it exits 0, `policy.max_attempts` attempts were made, or
    the slice could not be provisioned in `policy.max_wait_seconds`. `stop` kills the command
    on every worker (`stop_command`); `clock` is wall time, as heartbeats are."""
    session = _Session(spec, runner, policy, start, heartbeats, list(stop), sleep, clock, log)
    causes: collections.Counter[str] = collections.Counter()
    attempt = 0
    for attempt in range(1, policy.max_attempts + 1):
        if attempt > 1:
            wait = _backoff(policy, attempt)
            session.note(f"attempt {attempt} in {wait:.0f} s")
            session.sleep(wait)
        try:
            _attempt(session, setup, run)
        except _Failed as failed:
            session.note(f"attempt {attempt} failed: {failed}")
            causes[str(failed).split(":")[0]] += 1
            if failed.final:
                return _finish(session, False, attempt, causes, f"stopped: {failed}")
            continue
        return _finish(session, True, attempt, causes, f"succeeded on attempt {attempt}")
    return _finish(session, False, attempt, causes, f"gave up after {attempt} attempts")


def _finish(session: _Session, succeeded: bool, attempts: int, causes: collections.Counter,
            verdict: str) -> BabysitOutcome:
    """The one-line summary: the verdict, the slices created and what the failures were."""
    failures = ", ".join(f"{cause} x{count}" for cause, count in causes.items()) or "none"
    summary = (f"{verdict}; {session.recreations} slice(s) created; "
               f"failed attempts: {failures}")
    session.note(summary)
    return BabysitOutcome(succeeded, attempts, session.recreations, session.events, summary)


def _attempt(session: _Session, setup: Sequence[Sequence[str]], run: Sequence[str]) -> None:
    """One try: slice up, set up where needed, command run and watched; raises `_Failed`."""
    if _bring_up(session):
        session.set_up = False
    if not session.set_up:
        for argv in setup:
            code = session.runner(argv).returncode
            if code:
                raise _Failed(f"setup failed: `{shlex.join(argv)[:120]}` exited with {code}")
        session.set_up = True
    code = _watch(session, run)
    if code:
        state = session.state()
        if state not in commands.READY_STATES:
            raise _Failed(f"slice lost: the command exited with {code} and the slice is "
                          f"{state or 'gone'}")
        raise _Failed(f"command failed: it exited with {code}")


def _backoff(policy: BabysitPolicy, attempt: int) -> float:
    return min(policy.backoff_seconds * 2 ** (attempt - 2), policy.max_backoff_seconds)


def _bring_up(session: _Session) -> bool:
    """Waits for an ACTIVE slice, creating it (once per attempt) if missing or dead; True
    when a slice was created."""
    deadline = session.clock() + session.policy.max_wait_seconds
    created = False
    state = session.state()
    while state not in commands.READY_STATES:
        if state in commands.DEAD_STATES or state == "":
            if created:
                raise _Failed(f"slice lost: the new slice is {state or 'gone'}")
            _recreate(session, state)
            created = True
        elif session.clock() >= deadline:
            raise _Failed(
                f"never active: slice {session.spec.target.name} is still {state} after "
                f"{session.policy.max_wait_seconds:.0f} s; try another zone or provisioning "
                "(--spot, --reserved), or wait longer (--max-wait)", final=True)
        else:
            session.sleep(session.policy.poll_seconds)
        state = session.state()
    return created


def _recreate(session: _Session, state: str) -> None:
    target = session.spec.target
    if state:
        session.note(f"slice {target.name} is {state}: deleting and recreating it")
        session.runner(commands.delete_command(target))
    else:
        session.note(f"no slice {target.name}: creating it")
    code = session.runner(commands.create_command(session.spec)).returncode
    if code:
        raise _Failed(f"create failed: `gcloud ... queued-resources create` exited with {code}")
    session.recreations += 1


def _watch(session: _Session, run: Sequence[str]) -> int:
    """The command's exit code; kills it on every worker when the heartbeats go stale."""
    process = session.start(run)
    started = session.clock()
    while (code := process.poll()) is None:
        session.sleep(session.policy.poll_seconds)
        stale = _stale_worker(session, started)
        if stale is not None:
            process.kill()
            process.wait()
            if session.stop:
                session.runner(session.stop)
            raise _Failed(f"stale heartbeat: worker {stale[0]} made no progress for "
                          f"{stale[1]:.0f} s; killed the command on every worker")
    return code


def _stale_worker(session: _Session, started: float) -> tuple[str, float] | None:
    """The worker whose last sign of life (its heartbeat, or the command's start) is oldest,
    if older than the limit. A command that writes no heartbeats is never judged stale."""
    beats = session.heartbeats()
    if not beats:
        return None
    now = session.clock()
    worker, last = min(beats.items(), key=lambda item: item[1])
    silent = now - max(last, started)
    return (worker, silent) if silent > session.policy.stale_after_seconds else None


def stop_command(target: TpuTarget, run_id: str) -> list[str]:
    """Kills, on every worker, the processes of the run (those whose environment holds the
    run's LMJAX_RUN_ID, which `commands.remote_run_line` exports), whatever their parents."""
    marker = shlex.quote(f"LMJAX_RUN_ID={run_id}")
    line = (f"for p in /proc/[0-9]*; do grep -qsxzF -- {marker} $p/environ && "
            "kill -9 ${p#/proc/}; done; true")
    return commands.ssh_command(target, line)


def read_heartbeats(run_dir: str) -> Heartbeats:
    """The heartbeats of the run at `run_dir` (a local path or gs://), read on each call;
    unreadable ones are skipped (a bucket's hiccup is not a dead worker). The run directory
    must be reachable from here: checked once, now, before anything is created."""
    import json

    from lmjax.errors import ConfigError
    from lmjax.runs.layout import RunLayout

    layout = RunLayout.at(run_dir)
    try:
        layout.heartbeats.exists()
    except Exception as err:  # noqa: BLE001 (a missing gcsfs, no credentials: any reason)
        raise ConfigError(f"babysit cannot read the run's heartbeats in {run_dir} ({err}); "
                          "fix that or pass --stale-after 0 to not watch them") from None

    def heartbeats() -> dict[str, float]:
        beats = {}
        try:
            paths = list(layout.heartbeats.glob("process-*.json"))
        except OSError:
            return beats
        for path in paths:
            try:
                beats[path.stem.removeprefix("process-")] = float(json.loads(path.read_text())["time"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return beats

    return heartbeats
