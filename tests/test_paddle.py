"""The later PaddlePaddle benchmark's 14-key result, and reading it back."""
from segbench import paddle


def _stats(**kw):
    s = {"model": "fastscnn", "batch_size": 2, "fp_item": "fp32", "gpu_num": 8, "FINAL_RESULT": 301.5,
         "last_loss": 1.2345, "env": {"mmsegmentation": "1.2.2", "torch": "2.11.0+cu130",
                                      "torch_git": "0123abcd"}}
    s.update(kw)
    return s


def test_fourteen_keys_in_order_with_the_benchmarks_conventions():
    r = paddle.result(_stats(), nnodes=1, run_seconds=93.6)
    assert tuple(r) == paddle.KEYS and len(r) == 14
    assert r["device_num"] == "N1C8" and r["ips"] == 301.5 and r["convergence_value"] == 1.2345
    assert r["model_name"] == "fastscnn_bs2_fp32_DP" and r["run_mode"] == "DP"
    assert r["model_branch"] == "v1.2.2" and r["model_commit"] is None
    assert r["frame_version"] == "2.11.0+cu130" and r["frame_commit"] == "0123abcd"
    assert r["model_run_time"] == 94 and r["speed_unit"] == "images/s"


def test_multi_node_layout_and_unknowns():
    assert paddle.result(_stats(gpu_num=32), nnodes=4)["device_num"] == "N4C8"
    assert paddle.result(_stats(gpu_num=None))["device_num"] is None       # never guessed
    assert paddle.result(_stats(env={}))["model_branch"] is None


def test_read_back_as_a_speed_record():
    sp = paddle.to_speed(paddle.result(_stats(gpu_num=32), nnodes=4), "x_paddle.json")
    assert sp["gpu_num"] == 32 and sp["run_mode"] == "mp" and sp["FINAL_RESULT"] == 301.5
    assert sp["JOB_FAIL_FLAG"] == 0 and sp["model_name"] == "fastscnn_bs2_fp32_DP"
    failed = paddle.to_speed(paddle.result(_stats(FINAL_RESULT=0.0, gpu_num=1)), "f")
    assert failed["JOB_FAIL_FLAG"] == 1 and failed["run_mode"] == "sp"
    assert paddle.to_speed({"ips": 3}, "f") is None
