"""Start and stop a real single-node SLURM (Debian's slurm-wlm + munge) for the tests.

The node is this machine, with one *fake* GPU (``gres.conf``: ``File=/dev/null``), so that a
job submitted with ``--gpus=1`` is scheduled on a GPU and sees ``CUDA_VISIBLE_DEVICES=0``.

Facts this relies on (measured in the sandbox, see issue 6):

* the configuration must be ``/etc/slurm/slurm.conf``: the executor plugin's job step strips
  ``SLURM_*`` variables, so ``SLURM_CONF`` pointing elsewhere breaks the nested ``srun``;
* there are no cgroups: ``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none``;
* a gres ``gpu`` without ``File=`` drains the node;
* there is no slurmdbd: the profile needs ``slurm-no-account`` and ``slurm-status-command:
  squeue`` (so ``MinJobAge`` is long, for squeue to still list finished jobs).

Only processes started here are stopped here (by the pid they were started with). Every
wait is bounded; failures raise :class:`SlurmError` with the daemon logs attached.

Usable from the command line too: ``python tests/slurm_cluster.py start|stop|status``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
STATE = Path("/var/lib/galmet-slurm")  # pid files, logs, spool dirs of this harness only
MUNGE_RUN = Path("/run/munge")
MUNGE_KEY = Path("/etc/munge/munge.key")
PARTITIONS = ("cpu", "gpu")  # the names profiles/slurm/config.yaml uses
MIN_CPUS = 8  # the profile's largest cpus_per_task; the node is declared with at least this
MARKER = "# written by galmet tests/slurm_cluster.py"

BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")


class SlurmError(RuntimeError):
    """The single-node cluster could not be started or does not answer."""


def missing_requirements() -> list[str]:
    """What prevents starting the cluster here (empty when nothing does)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("not running as root (slurmd and munged need root)")
    for b in BINARIES:
        if shutil.which(b) is None and not Path("/usr/sbin", b).exists():
            missing.append(f"{b} not found (apt-get install slurm-wlm munge)")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        missing.append("no 'munge' user (apt-get install munge)")
    return missing


def _bin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _run(cmd: list[str], timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise SlurmError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def _node_hardware() -> tuple[str, int, int]:
    """(node name, CPUs, RealMemory MB) as slurmd sees this machine."""
    out = _run([_bin("slurmd"), "-C"]).stdout
    fields = dict(tok.split("=", 1) for tok in out.split() if "=" in tok)
    name = fields.get("NodeName") or socket.gethostname().split(".")[0]
    return name, int(fields.get("CPUs", os.cpu_count() or 1)), int(fields.get("RealMemory", 1024))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return False


def _pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class SlurmCluster:
    """A single-node SLURM on this machine; use :meth:`start` / :meth:`stop` or ``with``."""

    node: str = ""
    cpus: int = 0
    mem_mb: int = 0
    started: list[tuple[str, int]] = field(default_factory=list)  # (daemon, pid) we started
    env: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- configuration
    def write_config(self) -> None:
        self.node, real_cpus, real_mem = _node_hardware()
        self.cpus = max(real_cpus, MIN_CPUS)
        # leave the OS some memory; jobs share the node (DefMemPerCPU, cons_tres). Nothing
        # enforces these numbers here (no cgroups): they only have to admit the profile's jobs.
        self.mem_mb = max(16000, int(real_mem * 0.8))
        for d in ("slurmctld", "slurmd", "log"):
            (STATE / d).mkdir(parents=True, exist_ok=True)
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        for path in (SLURM_CONF, GRES_CONF):
            if path.exists() and MARKER not in path.read_text():
                backup = path.with_name(path.name + ".galmet-backup")
                if not backup.exists():
                    shutil.copy2(path, backup)
        SLURM_CONF.write_text(
            f"""{MARKER}
ClusterName=galmet
SlurmctldHost={self.node}
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={STATE}/slurmctld
SlurmdSpoolDir={STATE}/slurmd
SlurmctldPidFile={STATE}/slurmctld.pid
SlurmdPidFile={STATE}/slurmd.pid
SlurmctldLogFile={STATE}/log/slurmctld.log
SlurmdLogFile={STATE}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in the sandbox
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
ReturnToService=2
# squeue is the status command (no slurmdbd): keep finished jobs listed
MinJobAge=900
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
# the node may be declared larger than it is (so the profile's site-sized requests fit)
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={self.node} CPUs={self.cpus} RealMemory={self.mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITIONS[0]} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
PartitionName={PARTITIONS[1]} Nodes={self.node} Default=NO MaxTime=INFINITE State=UP
"""
        )
        GRES_CONF.write_text(f"{MARKER}\nNodeName={self.node} Name=gpu File=/dev/null\n")

    # ---------------------------------------------------------------- daemons
    def _start_munge(self) -> None:
        if _run(["sh", "-c", "munge -n | unmunge"], check=False).returncode == 0:
            return  # a munged already answers (ours from before, or the system's)
        MUNGE_RUN.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_RUN, "munge", "munge")
        MUNGE_RUN.chmod(0o755)
        if not MUNGE_KEY.exists():
            MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
            MUNGE_KEY.write_bytes(os.urandom(1024))
            shutil.chown(MUNGE_KEY, "munge", "munge")
            MUNGE_KEY.chmod(0o400)
        _run(["runuser", "-u", "munge", "--", _bin("munged")])  # daemonizes, writes its pid file
        pid = self._wait_for(lambda: _pid_from(MUNGE_RUN / "munged.pid"), 15, "munged pid file")
        self.started.append(("munged", pid))
        (STATE / "munged.pid").write_text(f"{pid}\n")
        self._wait_for(
            lambda: _run(["sh", "-c", "munge -n | unmunge"], check=False).returncode == 0,
            15, "munge to answer",
        )

    def _start_daemon(self, name: str) -> None:
        pidfile = STATE / f"{name}.pid"
        pidfile.unlink(missing_ok=True)
        args = [_bin(name)]
        if name == "slurmctld":
            args.append("-c")  # clean start: no jobs or node state from an earlier run
        _run(args, timeout=30)
        pid = self._wait_for(lambda: _pid_from(pidfile), 20, f"{name} pid file")
        self.started.append((name, pid))

    def _wait_for(self, probe, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = probe()
            except (subprocess.SubprocessError, OSError, SlurmError):
                value = None
            if value:
                return value
            time.sleep(0.5)
        raise SlurmError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def node_state(self) -> str:
        p = _run(["sinfo", "-h", "-N", "-n", self.node, "-o", "%T"], check=False, timeout=10)
        # one line per partition the node is in
        lines = p.stdout.split() if p.returncode == 0 else []
        return lines[0] if lines else ""

    def start(self, timeout: float = 60) -> SlurmCluster:
        """Write the configuration, start munged, slurmctld, slurmd; wait for the node idle."""
        missing = missing_requirements()
        if missing:
            raise SlurmError("cannot start SLURM: " + "; ".join(missing))
        stop_stale()
        self.write_config()
        try:
            self._start_munge()
            self._start_daemon("slurmctld")
            self._wait_for(
                lambda: _run(["scontrol", "ping"], check=False).stdout.count("UP") > 0,
                timeout, "slurmctld to answer scontrol ping",
            )
            self._start_daemon("slurmd")
            self._wait_for(
                lambda: self.node_state().rstrip("*") in ("idle", "mixed", "allocated"),
                timeout, f"node {self.node} to become idle (state: {self.node_state()!r})",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 20) -> None:
        """Stop the daemons this object started (slurmd, slurmctld, then munged)."""
        for name, pid in reversed(self.started):
            _terminate(pid, name, timeout)
        self.started.clear()
        for name in ("slurmctld", "slurmd", "munged"):
            (STATE / f"{name}.pid").unlink(missing_ok=True)

    def logs(self, tail: int = 40) -> str:
        out = []
        for f in sorted((STATE / "log").glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {f} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(out)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _terminate(pid: int, name: str, timeout: float) -> None:
    if not _alive(pid) or name not in _cmdline(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def stop_stale() -> None:
    """Stop daemons a previous, interrupted run of this harness left (its pid files only)."""
    for name in ("slurmd", "slurmctld", "munged"):
        pid = _pid_from(STATE / f"{name}.pid")
        if pid is not None:
            _terminate(pid, name, 20)
            (STATE / f"{name}.pid").unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "status"
    if cmd == "start":
        c = SlurmCluster().start()
        print(f"SLURM up: node {c.node}, {c.cpus} CPUs, {c.mem_mb} MB, 1 fake GPU; "
              f"stop with: python {argv[0]} stop")
        # the daemons outlive this process; their pids are in STATE for `stop`
        for name, pid in c.started:
            (STATE / f"{name}.pid").write_text(f"{pid}\n")
        return 0
    if cmd == "stop":
        stop_stale()
        return 0
    if cmd == "status":
        print(_run(["sinfo", "-N", "-l"], check=False).stdout or "SLURM not answering")
        return 0
    print(f"usage: {argv[0]} start|stop|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
