"""Beyond one host on torchrun's own rendezvous: two local "nodes" on the CPU, and Slurm's variables."""
import json
import socket
import subprocess
from pathlib import Path

import pytest

from segbench import history, launch

REPO = Path(__file__).resolve().parent.parent


def test_slurm_variables_give_the_nodes_and_the_rendezvous():
    slurm = {"SLURM_NNODES": "4", "SLURM_NODEID": "2", "SLURM_JOB_NODELIST": "gpu[03-06]",
             "SLURM_JOB_ID": "812345"}
    c = launch.parse_case(["fastscnn", "mp", "fp32", "2", "500", "5"], slurm)
    assert (c.nnodes, c.node_rank, c.master_addr, c.master_port) == (4, 2, "gpu03", 29500 + 2345)
    mine = launch.parse_case(["fastscnn", "mp", "fp32", "2", "500", "5"],
                             dict(slurm, NNODES="2", NODE_RANK="1", MASTER_ADDR="h", MASTER_PORT="7"))
    assert (mine.nnodes, mine.node_rank, mine.master_addr, mine.master_port) == (2, 1, "h", 7)
    alone = launch.parse_case(["fastscnn", "mp", "fp32", "2", "500", "5"], {})
    assert (alone.nnodes, alone.node_rank, alone.master_port) == (1, 0, 0)


@pytest.mark.parametrize("nodelist, first", [("gpu[03-06,9],login1", "gpu03"), ("n7", "n7"),
                                             ("a-b[1,4]", "a-b1"), ("x12,x13", "x12")])
def test_first_host_of_a_slurm_node_list(nodelist, first):
    assert launch.first_host(nodelist) == first


def test_a_node_cleans_up_only_its_own_files(tmp_path):
    """Nodes that share a log dir: node 1's clean start never removes node 0's log or files (it
    did, racing node 0's run: node 0's analysis then found no log)."""
    args = ["fastscnn", "mp", "fp32", "2", "500", "5"]
    environ = {"TRAIN_LOG_DIR": str(tmp_path), "NNODES": "2", "MASTER_ADDR": "h", "MASTER_PORT": "7"}
    node0 = launch.parse_case(args, dict(environ, NODE_RANK="0"))
    node1 = launch.parse_case(args, dict(environ, NODE_RANK="1"))
    for suffix in ("", "_speed", "_stats.json", "_iters.rank0.jsonl", "_host.jsonl"):
        node0.path(suffix).write_text("x")
    for suffix in ("", "_iters.rank1.jsonl", "_host.jsonl"):
        node1.path(suffix).write_text("x")
    assert [p.name for p in launch.own_files(node1)] == sorted(
        node1.path(s).name for s in ("", "_iters.rank1.jsonl", "_host.jsonl"))
    assert len(launch.own_files(node0)) == 5


def test_two_nodes_on_the_cpu_make_one_case(cpu_env, tmp_path):
    """NNODES=2: two launchers (one per "node", one process each), one gloo group of 2; node 0
    writes the case's files (gpu_num 2), node 1 its own log only."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(cpu_env, NNODES="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), MP_PROCS="1",
               CROP="64x128")
    args = ["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "mp", "fp32", "2", "10", "1"]
    procs = [subprocess.Popen(args, env=dict(env, NODE_RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [(o[0][-1500:], o[1][-1500:]) for o in outs]
    logs = Path(cpu_env["TRAIN_LOG_DIR"])
    name = "fastscnn_mp_bs2_fp32_2_crop64x128_li2"
    assert [p.name for p in logs.glob("*_speed")] == [f"{name}_speed"]
    speed = json.loads((logs / f"{name}_speed").read_text())
    assert speed["gpu_num"] == 2 and speed["JOB_FAIL_FLAG"] == 0 and speed["FINAL_RESULT"] > 0
    assert (logs / f"{name}.node1").is_file() and not (logs / f"{name}.node1_speed").exists()
    paddle = json.loads((logs / f"{name}_paddle.json").read_text())
    assert paddle["device_num"] == "N2C1"
    rows = history.select(logs)
    assert [r["case_name"] for r in rows] == [name] and rows[0]["gpu_num"] == 2
