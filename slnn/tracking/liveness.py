"""Is the process that opened a run still alive? ``owner_tags`` say who owns a run
(``slnn.owner``: host/boot/pid namespace/pid/start time), ``beat`` keeps its ``slnn.heartbeat``
fresh while it is open, and ``is_alive`` judges (True, False, or None: cannot tell), so that a
live run is never marked KILLED. The rules: docs/faults.md ("Liveness")."""

from __future__ import annotations

import os
import socket
import threading
import time

HEARTBEAT_SECONDS = float(os.environ.get("SLNN_HEARTBEAT_SECONDS", "30"))
LEASE_SECONDS = float(os.environ.get("SLNN_LEASE_SECONDS", str(6 * HEARTBEAT_SECONDS)))


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or ''
    when there is no such process (or no /proc), or it has ended and only waits for its parent
    to collect its exit status (a zombie: it runs nothing any more)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return ""
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and ')'
    if fields and fields[0] in ("Z", "X"):
        return ""
    return fields[19] if len(fields) > 19 else ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return ""


_HOST = socket.gethostname()
_BOOT = _read("/proc/sys/kernel/random/boot_id")
_PIDNS = _pid_namespace()


def _owner(pid: int) -> str:
    return "/".join((_HOST, _BOOT, _PIDNS, str(pid), start_time(pid)))


def process_owner(pid: int | None = None) -> str:
    """``slnn.owner``'s value for a process (this one by default): ``is_alive({"slnn.owner":
    ...})`` later says whether that very process still runs."""
    return _owner(os.getpid() if pid is None else pid)


def owner_tags() -> dict[str, str]:
    """The tags that say which process owns a run being opened now."""
    pid = os.getpid()
    return {"slnn.host": _HOST, "slnn.pid": str(pid), "slnn.owner": _owner(pid),
            "slnn.heartbeat": str(int(time.time()))}


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_alive(tags: dict, now: float | None = None) -> bool | None:
    """Whether the process that owns a run (by its tags) is alive; None when nothing tells."""
    now = time.time() if now is None else now
    owner = tags.get("slnn.owner", "")
    parts = owner.split("/")
    if len(parts) == 5 and parts[0]:
        host, boot, ns, pid, started = parts
        if host == _HOST and boot and boot == _BOOT and ns and ns == _PIDNS and pid.isdigit():
            return bool(started) and start_time(int(pid)) == started
        try:
            return now - float(tags.get("slnn.heartbeat", "")) < LEASE_SECONDS
        except ValueError:
            return None
    pid = tags.get("slnn.pid", "")  # a run recorded before slnn.owner existed
    if tags.get("slnn.host") == _HOST and pid.isdigit():
        return int(pid) == os.getpid() or _pid_exists(int(pid))
    return None


# --- the heartbeat ----------------------------------------------------------------------------

_open: dict[str, object] = {}  # run id -> client, the runs this process has open
_lock = threading.Lock()
_thread: threading.Thread | None = None
_wake = threading.Event()


def _loop() -> None:
    while True:
        _wake.wait(HEARTBEAT_SECONDS)
        _wake.clear()
        with _lock:
            runs = list(_open.items())
        now = str(int(time.time()))
        for run_id, client in runs:
            try:
                client.set_tag(run_id, "slnn.heartbeat", now)
            except Exception:  # noqa: BLE001 - the next beat tries again; the lease is 6 beats
                pass


opened_any = False  # this process has opened a run (an interrupt's line may say it was closed)


def beat(client, run_id: str) -> None:
    """Keep ``run_id``'s heartbeat fresh (a daemon thread, one per process) until ``stop``."""
    global _thread, opened_any
    with _lock:
        opened_any = True
        _open[run_id] = client
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, name="slnn-heartbeat", daemon=True)
            _thread.start()


def stop(run_id: str) -> None:
    with _lock:
        _open.pop(run_id, None)
