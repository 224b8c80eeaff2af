"""segbench.failure: a failed run's kind (gpu_oom, host_oom, other) from real message texts, as
torch, cuBLAS, cuDNN, NCCL, the data loader and the kernel print them."""
import pytest

from segbench import failure

GPU = [
    # torch >= 2.5 (torch.OutOfMemoryError) and 2.1-2.4 (torch.cuda.OutOfMemoryError)
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity "
    "of 139.72 GiB of which 3.56 MiB is free. Including non-PyTorch memory, this process has 139.70 GiB "
    "memory in use. Of the allocated memory 137.02 GiB is allocated by PyTorch, and 1.12 GiB is reserved "
    "by PyTorch but unallocated.",
    "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 22.00 MiB. GPU 0 has a total "
    "capacity of 23.65 GiB of which 11.06 MiB is free.",
    "[rank1]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
    # torch 1.x
    "RuntimeError: CUDA out of memory. Tried to allocate 12.50 MiB (GPU 0; 10.92 GiB total capacity; "
    "8.57 MiB already allocated; 9.28 GiB free; 4.68 MiB cached)",
    "RuntimeError: CUDA error: out of memory",
    "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "RuntimeError: cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, "
    "unhandled cuda error, NCCL version 2.20.5 ... Last error: Cuda failure 'out of memory'",
    "host:1234:1240 [0] include/alloc.h:103 NCCL WARN Cuda failure 2 'out of memory'",
]
HOST = [
    "RuntimeError: DataLoader worker (pid 19597) is killed by signal: Killed.",
    "OSError: [Errno 12] Cannot allocate memory",
    "RuntimeError: [enforce fail at alloc_cpu.cpp:114] data. DefaultCPUAllocator: not enough memory: "
    "you tried to allocate 1073741824 bytes.",
    "RuntimeError: [enforce fail at CPUAllocator.cpp:68] . DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 3221225472 bytes. Error code 12 (Cannot allocate memory)",
    "MemoryError: Unable to allocate 2.00 GiB for an array with shape (16384, 16384) and data type float64",
]
OTHER = [
    "RuntimeError: segbench fault injection at iteration 3 on rank 0",
    "RuntimeError: cuDNN error: CUDNN_STATUS_INTERNAL_ERROR",     # not clearly memory
    "RuntimeError: DataLoader worker (pid 25902) is killed by signal: Segmentation fault.",
    "RuntimeError: DataLoader worker (pid(s) 1234) exited unexpectedly",
    "ValueError: loss is nan",
]


@pytest.mark.parametrize("line", GPU)
def test_gpu_out_of_memory_lines(line):
    kind, detail = failure.classify(["Traceback (most recent call last):", "  File ...", line])
    assert kind == "gpu_oom" and detail and not detail.startswith("[rank")
    assert len(detail) <= failure.DETAIL_CHARS


@pytest.mark.parametrize("line", HOST)
def test_host_out_of_memory_lines(line):
    assert failure.classify(["Traceback (most recent call last):", line])[0] == "host_oom"


@pytest.mark.parametrize("line", OTHER)
def test_other_failures(line):
    assert failure.classify([line]) == ("other", None)


def test_a_traceback_s_source_lines_are_not_evidence():
    lines = ["Traceback (most recent call last):", '  File "/repo/segbench/timing.py", line 305, in f',
             "    raise torch.OutOfMemoryError(msg)", "RuntimeError: segbench fault injection"]
    assert failure.classify(lines) == ("other", None)
    lines[-1] = "torch.OutOfMemoryError: segbench fault injection at iteration 3 on rank 0"
    assert failure.classify(lines) == ("gpu_oom", lines[-1])


def test_gpu_evidence_wins_and_the_first_line_is_kept():
    lines = ["RuntimeError: DataLoader worker (pid 7) is killed by signal: Killed.",
             "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB.",
             "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 9.00 GiB."]
    assert failure.classify(lines) == ("gpu_oom", lines[1])


def test_sigkill_with_no_other_cause_is_host_oom():
    assert failure.classify(["Iter(train) [ 10/40]"], rc=-9)[0] == "host_oom"
    assert failure.classify([], rc=137)[0] == "host_oom"
    torchrun = ("train.py FAILED ... [0]: time : 2026-12-01_10:00:00 host : h rank : 0 (local_rank: 0) "
                "exitcode : -9 (pid: 4242) error_file: <N/A>")
    assert failure.classify([torchrun], rc=1)[0] == "host_oom"
    assert failure.classify([], rc=1) == ("other", None)


def test_a_frame_without_a_source_line_does_not_hide_the_next_line():
    """``File "<string>"`` frames have no source line: the line after them is the exception."""
    for prefix in ("", "[rank0]: "):
        lines = [f"{prefix}Traceback (most recent call last):",
                 f'{prefix}  File "<string>", line 1, in <module>',
                 f"{prefix}torch.OutOfMemoryError: CUDA out of memory."]
        assert failure.classify(lines) == ("gpu_oom", "torch.OutOfMemoryError: CUDA out of memory.")


def test_an_old_oom_reason_keeps_its_kind():
    """Logs from before the kinds existed said ``oom: out of memory at batch size 2 per process
    (cuda)``: re-analysed, they are still OOMs, of the device they name."""
    old = "oom: out of memory at batch size 2 per process (cuda)"
    assert failure.kind_of({"exit_code": 3}, old) == "gpu_oom"
    assert failure.kind_of({}, "oom: out of memory at batch size 2 per process (cpu)") == "host_oom"
    assert failure.kind_of({}, "oom") == "host_oom" and failure.kind_of({}, "room: x") == "other"


def test_reason_and_kind_of_a_sidecar():
    r = failure.oom_reason("gpu_oom", 256, "GPU", "torch.OutOfMemoryError: CUDA out of memory.")
    assert r == "out of GPU memory at batch 256 per GPU (torch.OutOfMemoryError: CUDA out of memory.)"
    assert failure.kind_of({"failure_kind": "host_oom"}, "anything") == "host_oom"
    assert failure.kind_of({}, r) == "gpu_oom"
    assert failure.kind_of(None, "out of host memory at batch 8 per process") == "host_oom"
    old_log = "crashed: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    assert failure.kind_of(None, old_log) == "gpu_oom"
    assert failure.kind_of({"failure_kind": "bogus"}, "timeout after 900 s") == "other"
    assert failure.kind_of({"failure_kind": "gpu_oom"}, None) is None
