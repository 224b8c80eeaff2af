"""The later PaddlePaddle benchmark's result record (frame_benchmark/pytorch/dynamic/PaddleSeg).

Beside the seed's 10-key speed file, every analysed case also gets ``<case>_paddle.json``: the 14
keys that benchmark writes, so a framework team can put a segbench figure straight beside theirs::

    model_branch, model_commit, model_name, batch_size, fp_item, run_mode, convergence_value,
    convergence_key, ips, speed_unit, device_num, model_run_time, frame_commit, frame_version

``ips`` is FINAL_RESULT (the same formula: bs x gpus / mean window time after 4 windows),
``device_num`` is ``N<nodes>C<gpus>``, ``convergence_value`` the last loss, ``run_mode`` "DP" (the
benchmark's name for data parallel, one process per GPU: both of segbench's sp and mp),
``model_branch`` the mmsegmentation release that ran (``v1.2.2``; ``model_commit`` is null: it is
installed from a release, not a checkout), ``frame_version`` and ``frame_commit`` torch's version and
git commit, ``model_run_time`` the run's wall seconds. A failed case has ``ips`` 0, as its speed file
has FINAL_RESULT 0. :func:`to_speed` reads such a record back as a speed record (segbench.report).
"""
from __future__ import annotations

KEYS = ("model_branch", "model_commit", "model_name", "batch_size", "fp_item", "run_mode",
        "convergence_value", "convergence_key", "ips", "speed_unit", "device_num",
        "model_run_time", "frame_commit", "frame_version")
SUFFIX = "_paddle.json"


def result(stats: dict, nnodes: int = 1, run_seconds: float | None = None) -> dict:
    """The 14-key record of one case from its stats sidecar dict."""
    env = stats.get("env") or {}
    gpus = stats.get("gpu_num")
    mmseg = env.get("mmsegmentation")
    nodes = nnodes if isinstance(nnodes, int) and nnodes > 0 else 1
    return {
        "model_branch": f"v{mmseg}" if mmseg else None, "model_commit": None,
        "model_name": f"{stats.get('model')}_bs{stats.get('batch_size')}_{stats.get('fp_item')}_DP",
        "batch_size": stats.get("batch_size"), "fp_item": stats.get("fp_item"), "run_mode": "DP",
        "convergence_value": stats.get("last_loss"), "convergence_key": "loss:",
        "ips": stats.get("FINAL_RESULT"), "speed_unit": "images/s",
        "device_num": f"N{nodes}C{gpus // nodes}" if isinstance(gpus, int) and gpus % nodes == 0
        else None,
        "model_run_time": None if run_seconds is None else round(run_seconds),
        "frame_commit": env.get("torch_git"), "frame_version": env.get("torch"),
    }


def to_speed(obj: dict, log_file: str) -> dict | None:
    """A 14-key record as the seed's speed record (for reports), or None when it is not one."""
    if not isinstance(obj, dict) or not set(KEYS) <= set(obj):
        return None
    nc = str(obj.get("device_num") or "")
    nodes, _, per_node = nc.removeprefix("N").partition("C")
    gpus = int(nodes) * int(per_node) if nodes.isdigit() and per_node.isdigit() else None
    ips = obj.get("ips")
    ok = isinstance(ips, (int, float)) and not isinstance(ips, bool) and ips > 0
    return {"log_file": log_file, "model_name": obj.get("model_name"), "mission_name": "图像分割",
            "direction_id": 0, "run_mode": "sp" if gpus == 1 else "mp", "index": 1,
            "gpu_num": gpus, "FINAL_RESULT": ips if ok else 0.0, "JOB_FAIL_FLAG": 0 if ok else 1,
            "UNIT": obj.get("speed_unit") or "images/s"}
