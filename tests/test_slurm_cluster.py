"""The one-node SLURM test cluster (``scripts/slurm/up``, docs/slurm.md): small jobs share the
node, accounting (sacct) reports finished and cancelled jobs, and submitit -- what
``hydra/launcher=submitit_slurm`` runs on -- gets results back and never hangs on a cancelled job.
Skipped, with the reason, where the cluster cannot start."""

from __future__ import annotations

import operator
import threading
import time

import pytest

from slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.slow


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate()`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def within(seconds: float, fn, *args):
    """``fn(*args)``'s result or exception, but fail the test (not hang) after ``seconds``."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__qualname__', fn)} did not return within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def sbatch(cluster, tmp_path, *args: str) -> str:
    out = cluster.run("sbatch", "--parsable", f"--output={tmp_path}/%j.out", *args).stdout
    return out.strip().split(";")[0]


def sacct(cluster, *job_ids: str) -> dict[str, dict[str, str]]:
    """``{job_id: {"State": ..., "Start": ..., "End": ..., ...}}`` of the jobs' allocations."""
    fields = ["JobID", "State", "Start", "End", "ExitCode", "AllocTRES"]
    out = cluster.run("sacct", "-n", "-X", "-P", "-o", ",".join(fields),
                      *[a for j in job_ids for a in ("-j", j)]).stdout
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]
    return {r["JobID"]: r for r in rows}


def finished(cluster, *job_ids: str):
    """sacct's rows once every job has ended (None before)."""
    rows = sacct(cluster, *job_ids)
    done = all(j in rows and rows[j]["State"] not in ("PENDING", "RUNNING", "REQUEUED",
                                                      "SUSPENDED") for j in job_ids)
    return rows if done else None


def running(cluster, job_id: str) -> bool:
    return cluster.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).stdout.strip() \
        == "RUNNING"


def test_small_jobs_share_the_node_and_sacct_reports_them_completed(slurm_cluster, tmp_path):
    cpus = int(slurm_cluster.run("sinfo", "-h", "-o", "%c").stdout.split()[0].rstrip("+"))
    if cpus < 2:
        pytest.skip(f"the node has {cpus} CPU: two 1-CPU jobs cannot run at the same time")
    jobs = [sbatch(slurm_cluster, tmp_path, "--mem=200M", "--cpus-per-task=1", "--wrap=sleep 3")
            for _ in range(2)]
    # both are RUNNING at one moment (squeue) ...
    wait_until(lambda: all(running(slurm_cluster, j) for j in jobs), 30,
               "the two 200 MB / 1 CPU jobs running at the same time")
    rows = wait_until(lambda: finished(slurm_cluster, *jobs), 60, "both jobs finished in sacct")
    # ... and accounting agrees: COMPLETED, exit 0, each given what it asked for, overlapping
    for j in jobs:
        assert rows[j]["State"] == "COMPLETED", rows[j]
        assert rows[j]["ExitCode"] == "0:0", rows[j]
        assert "cpu=1" in rows[j]["AllocTRES"] and "mem=200M" in rows[j]["AllocTRES"], rows[j]
    a, b = (rows[j] for j in jobs)
    assert max(a["Start"], b["Start"]) < min(a["End"], b["End"]), (a, b)  # ISO times sort


def test_a_job_that_asks_for_no_memory_gets_DefMemPerCPU_not_the_node(slurm_cluster, tmp_path):
    job = sbatch(slurm_cluster, tmp_path, "--cpus-per-task=1", "--wrap=true")
    rows = wait_until(lambda: finished(slurm_cluster, job), 60, "the job finished in sacct")
    assert rows[job]["State"] == "COMPLETED", rows[job]
    assert "mem=1G" in rows[job]["AllocTRES"], rows[job]  # DefMemPerCPU=1024 x 1 CPU


def test_a_cancelled_job_is_recorded_as_cancelled(slurm_cluster, tmp_path):
    job = sbatch(slurm_cluster, tmp_path, "--mem=200M", "--cpus-per-task=1", "--wrap=sleep 300")
    wait_until(lambda: running(slurm_cluster, job), 30, "the job running")
    slurm_cluster.run("scancel", job)
    rows = wait_until(lambda: finished(slurm_cluster, job), 30, "the cancelled job in sacct")
    assert rows[job]["State"].startswith("CANCELLED"), rows[job]


@pytest.fixture
def executor(slurm_cluster, tmp_path):
    submitit = pytest.importorskip("submitit")
    ex = submitit.AutoExecutor(folder=tmp_path / "submitit")
    assert ex.cluster == "slurm", "submitit did not pick SLURM (is srun on PATH?)"
    ex.update_parameters(slurm_partition=slurm_cluster.partition, mem_gb=0.5, cpus_per_task=1,
                         timeout_min=5)
    return ex


def test_submitit_gets_a_result_back(executor):
    job = executor.submit(operator.mul, 6, 7)  # a stdlib function: unpickles in the job
    assert within(120, job.result) == 42


def test_submitit_raises_on_a_cancelled_job_instead_of_hanging(executor, slurm_cluster):
    from submitit.core.utils import UncompletedJobError

    job = executor.submit(time.sleep, 300)
    wait_until(lambda: job.state == "RUNNING", 60, "the submitit job running")
    slurm_cluster.run("scancel", job.job_id)
    with pytest.raises(UncompletedJobError, match="CANCELLED"):
        within(60, job.result)
