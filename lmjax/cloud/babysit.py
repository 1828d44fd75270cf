"""Keeps a command running on a TPU slice until it succeeds: recreates a preempted or failed
slice, sets it up again and reruns the command, a bounded number of times with backoff.

Preemption is read from the queued resource's state (`commands.state_command`): SUSPENDED,
PREEMPTED, FAILED and the like mean the slice is gone and must be deleted and recreated; a
describe that fails means there is no slice yet. The command itself is relaunched with the same
run id and run directory, so `lmjax train` and `lmjax sweep run` resume from their checkpoints
and finished sweep points. The runner, `sleep` and `clock` are injected: tests drive the whole
loop with a fake runner and a fake clock.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from lmjax.cloud import commands
from lmjax.cloud.launcher import Runner
from lmjax.cloud.spec import TpuSpec


@dataclasses.dataclass(frozen=True)
class BabysitPolicy:
    max_attempts: int = 10  # runs of the command, each on a healthy (maybe recreated) slice
    backoff_seconds: float = 60.0  # before attempt n (n >= 2): backoff * 2**(n-2), capped
    max_backoff_seconds: float = 1800.0
    poll_seconds: float = 60.0  # between state checks while a slice is provisioning
    max_wait_seconds: float = 6 * 3600.0  # a queued slice not ACTIVE by then fails the attempt


@dataclasses.dataclass
class BabysitOutcome:
    succeeded: bool
    attempts: int
    recreations: int  # slices created by the babysitter
    events: list[str]


@dataclasses.dataclass
class _Session:
    spec: TpuSpec
    runner: Runner
    policy: BabysitPolicy
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    log: Callable[[str], None]
    events: list[str] = dataclasses.field(default_factory=list)
    recreations: int = 0

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
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = print,
) -> BabysitOutcome:
    """Runs `run` on the slice until it exits 0 or `policy.max_attempts` runs were made.

    Before each run the slice is brought up: a missing slice is created, a dead one deleted
    and recreated, a provisioning one waited for; `setup` runs on every slice created here
    (a recreated slice is bare).
    """
    session = _Session(spec, runner, policy, sleep, clock, log)
    for attempt in range(1, policy.max_attempts + 1):
        if attempt > 1:
            session.sleep(_backoff(policy, attempt))
        created = _bring_up(session)
        if created is None:
            continue
        if created and not _setup(session, setup):
            continue
        code = runner(run).returncode
        if code == 0:
            session.note(f"command succeeded on attempt {attempt}")
            return BabysitOutcome(True, attempt, session.recreations, session.events)
        session.note(f"attempt {attempt}: command exited with {code}")
    session.note(f"gave up after {policy.max_attempts} attempts")
    return BabysitOutcome(False, policy.max_attempts, session.recreations, session.events)


def _backoff(policy: BabysitPolicy, attempt: int) -> float:
    return min(policy.backoff_seconds * 2 ** (attempt - 2), policy.max_backoff_seconds)


def _bring_up(session: _Session) -> bool | None:
    """Waits for an ACTIVE slice, creating it (once per attempt) if missing or dead.
    True: a slice was created; False: the existing one is up; None: no slice this attempt."""
    deadline = session.clock() + session.policy.max_wait_seconds
    created = False
    state = session.state()
    while state not in commands.READY_STATES:
        if state in commands.DEAD_STATES or state == "":
            if created:
                session.note(f"the new slice is {state or 'gone'}; retrying")
                return None
            if not _recreate(session, state):
                return None
            created = True
        elif session.clock() >= deadline:
            session.note(f"slice still {state} after {session.policy.max_wait_seconds:.0f} s")
            return None
        else:
            session.sleep(session.policy.poll_seconds)
        state = session.state()
    return created


def _recreate(session: _Session, state: str) -> bool:
    target = session.spec.target
    if state:
        session.note(f"slice {target.name} is {state}: deleting and recreating it")
        session.runner(commands.delete_command(target))
    else:
        session.note(f"no slice {target.name}: creating it")
    if session.runner(commands.create_command(session.spec)).returncode:
        session.note("create failed")
        return False
    session.recreations += 1
    return True


def _setup(session: _Session, setup: Sequence[Sequence[str]]) -> bool:
    for argv in setup:
        code = session.runner(argv).returncode
        if code:
            session.note(f"setup exited with {code}")
            return False
    return True
