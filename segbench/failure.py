"""Why a training run failed, as a machine-readable kind (the result record's and the sidecar's
``failure_kind``, docs/FORMATS.md):

- ``gpu_oom``: the device ran out of memory -- torch's CUDA OOM (``torch.OutOfMemoryError`` /
  ``torch.cuda.OutOfMemoryError``, "CUDA out of memory", "CUDA error: out of memory"), cuBLAS's or
  cuDNN's failed allocation (``CUBLAS_STATUS_ALLOC_FAILED``, ``CUDNN_STATUS_ALLOC_FAILED``; cuDNN's
  ``CUDNN_STATUS_INTERNAL_ERROR`` only where its line names memory), NCCL's "out of memory";
- ``host_oom``: the host ran out of memory -- a data-loader worker "killed by signal: Killed", "Cannot
  allocate memory", the CPU allocator's "DefaultCPUAllocator: not enough memory" / "can't allocate
  memory", Python's MemoryError, or a training process killed by SIGKILL (exit -9 / 137, torchrun's
  "exitcode: -9") that the harness did not send (the kernel's OOM killer sends SIGKILL);
- ``other``: everything else (a crash, a timeout, an interrupt, bad input, a failed analysis).

:class:`Evidence` reads a run's output line by line (a traceback's source lines are code, not
evidence); GPU evidence wins over host evidence, the first line of each kind is kept.
Pure: no torch, no files.
"""
from __future__ import annotations

import re

GPU_OOM, HOST_OOM, OTHER = "gpu_oom", "host_oom", "other"
KINDS = (GPU_OOM, HOST_OOM, OTHER)
OOM_KINDS = (GPU_OOM, HOST_OOM)
DETAIL_CHARS = 200
SIGKILL_EXITS = (-9, 137)   # Popen's -9; a shell's 128 + 9

_GPU = re.compile(
    r"CUDA out of memory|CUDA error: out of memory|\bOutOfMemoryError\b"
    r"|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED"
    r"|CUDNN_STATUS_INTERNAL_ERROR.*(?:out of memory|alloc)"
    r"|Cuda failure (?:\d+ )?'out of memory'|NCCL.*out of memory", re.IGNORECASE)
_HOST = re.compile(
    r"DataLoader worker \(pid\(?s?\)? [\d, ]+\) is killed by signal: Killed"
    r"|Cannot allocate memory|DefaultCPUAllocator: (?:not enough memory|can't allocate memory)"
    r"|(?<![\w.])MemoryError\b")
_SIGKILL = re.compile(r"exitcode\s*:\s*-9\b")
_RANK_PREFIX = re.compile(r"^\s*(?:\[rank\d+\]:|\[default\d+\]:|\d+:)\s*")


def line_kind(line: str) -> str | None:
    """``gpu_oom`` or ``host_oom`` when the line is evidence of that, else None."""
    if _GPU.search(line):
        return GPU_OOM
    if _HOST.search(line):
        return HOST_OOM
    return None


def _detail(line: str) -> str:
    text = " ".join(_RANK_PREFIX.sub("", line).split())
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS - 3] + "..."


class Evidence:
    """The memory evidence in a run's output: feed it every line, then ask :meth:`verdict`."""

    def __init__(self):
        self.first: dict[str, str] = {}
        self.sigkill: str | None = None
        self._source = False   # the line after a traceback's ``File "..."`` frame: source code

    def feed(self, line: str) -> None:
        bare = _RANK_PREFIX.sub("", line)
        source, self._source = self._source, bare.lstrip().startswith('File "')
        # a frame's source line, indented under it (e.g. ``    raise torch.OutOfMemoryError(msg)``):
        # code, not what happened; a frame without one (``File "<string>"``) is followed by the rest
        if source and bare.startswith("    "):
            return
        kind = line_kind(line)
        if kind is not None:
            self.first.setdefault(kind, _detail(line))
        elif self.sigkill is None and _SIGKILL.search(line):
            self.sigkill = _detail(line)

    def verdict(self, rc: int | None) -> tuple[str, str | None]:
        """(kind, the line that shows it or None) for a run that failed with exit status ``rc``
        (a run the harness ended itself -- timeout, signal -- is ``other`` before it gets here)."""
        for kind in OOM_KINDS:
            if kind in self.first:
                return kind, self.first[kind]
        if rc in SIGKILL_EXITS or self.sigkill:
            return HOST_OOM, (self.sigkill or f"exit {rc}: killed by SIGKILL") + (
                " with no other cause (the kernel's OOM killer sends SIGKILL)")
        return OTHER, None


def classify(lines, rc: int | None = 1) -> tuple[str, str | None]:
    """:meth:`Evidence.verdict` over ``lines`` (an iterable of text lines)."""
    ev = Evidence()
    for line in lines:
        ev.feed(line)
    return ev.verdict(rc)


def oom_reason(kind: str, batch_size: int, per: str, detail: str | None) -> str:
    """The one-line reason of an OOM, e.g. ``out of GPU memory at batch 256 per GPU
    (torch.OutOfMemoryError: CUDA out of memory. ...)``."""
    memory = "GPU" if kind == GPU_OOM else "host"
    return f"out of {memory} memory at batch {batch_size} per {per}" + (f" ({detail})" if detail else "")


def kind_of(result: dict | None, reason: str | None) -> str | None:
    """A log's failure kind: None when it passed; its result record's ``failure_kind`` where that
    is one of KINDS; else read from the reason's text (logs written before the kind existed, or
    without the harness's records)."""
    if reason is None:
        return None
    recorded = (result or {}).get("failure_kind") if isinstance(result, dict) else None
    if recorded in KINDS:
        return recorded
    said = re.match(r"out of (GPU|host) memory", reason)
    if said:
        return {"GPU": GPU_OOM, "host": HOST_OOM}[said.group(1)]
    if re.match(r"oom(?::|$)", reason):   # the older form: "oom: out of memory at ... (cuda)"
        return GPU_OOM if "(cuda)" in reason else HOST_OOM
    return line_kind(reason) or OTHER
