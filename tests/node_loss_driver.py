"""A job that loses a worker node while the node holds its engine actor (driven by test_node_loss.py).

Starts its own cluster on this machine: a head of 1 CPU, where this driver runs, and a worker node of
2 CPUs, the only node an engine replica of 2 CPUs fits on. The first engine actor blocks in its first
batch; then the worker node is killed (its raylet and every process of it, as a lost machine would
be) and a fresh 2-CPU node is added, as an autoscaler would. Prints its findings on one line that starts with REPORT.

    python tests/node_loss_driver.py CORPUS OUTPUT MODEL STATE_DIR
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from bonito_ray.cluster import PRIVACY_ENV
from bonito_ray.config import GenerateConfig
from bonito_ray.engines import hf
from bonito_ray.pipeline import generate
from tests.faults import blocked_victim, killable_hf_generator


def kill_the_engine_node(cluster: Cluster, worker, state: Path, report: dict) -> None:
    """Once the first engine actor holds a batch, kill the node it runs on, then add a new one."""
    victim = blocked_victim(state, 180)
    if victim is None:
        return
    report["engine_node"] = victim["node_id"]
    report["worker_node"] = worker.node_id
    if victim["node_id"] != worker.node_id:
        return  # not where this test put it: the test fails on the report
    cluster.remove_node(worker, allow_graceful=False)
    report["killed"] = True
    report["replacement_node"] = cluster.add_node(num_cpus=2).node_id


def main() -> None:
    corpus, output, model, state = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    os.environ.update(PRIVACY_ENV)  # before the nodes start, so that every process inherits it
    # The nodes listen on this machine's own address: a driver's Ray resolves 127.0.0.1 to it.
    # A lost node is declared dead after about 3 s instead of Ray's default of about 30 s.
    health = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                             "_system_config": health})
    worker = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    hf.HFGenerator = killable_hf_generator(state)
    report: dict = {"killed": False}
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["summary"] = generate(GenerateConfig(
                input=corpus, output=output, model=model, task_types=["ynqa"], max_tokens=8, batch_size=4,
                cpus_per_replica=2, max_error_rate=0.0, ray_address=cluster.address))
        except BaseException as err:  # reported, not raised: the node must be restored either way
            outcome["error"] = repr(err)

    job = threading.Thread(target=run)  # nodes are added only from the main thread (Ray's signal handlers)
    job.start()
    try:
        kill_the_engine_node(cluster, worker, state, report)
        job.join()
        if "error" in outcome:
            report["error"] = outcome["error"]
        else:
            summary = outcome["summary"]
            actors = ray._private.state.actors().values()
            engine = [a for a in actors if "KillableHFGenerator" in a["ActorClassName"]]
            coordination = [a for a in actors
                            if a["ActorClassName"] in ("DedupShard", "ErrorBudget", "ProgressCounter")]
            report.update(
                accepted=sum(summary.accepted.values()),
                rejected=sum(summary.rejected.values()) + sum(summary.filtered.values()),
                engine_errors=summary.engine_errors, head_node=cluster.head_node.node_id,
                engine_restarts=[a["NumRestarts"] for a in engine],
                coordination_nodes=sorted({a["Address"]["NodeID"] for a in coordination}))
    finally:
        print("REPORT " + json.dumps(report), flush=True)
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
