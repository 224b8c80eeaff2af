"""Every knob of a case, once: its environment variable (what run_benchmark.sh and the seed's
platform set) and its ``segbench`` command-line flag (segbench.cli). segbench.launch reads the
variables; the command turns its flags into them, so the two can never mean different things.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Knob:
    env: str
    flag: str
    help: str
    set_to: str | None = None    # a switch flag: the value it sets (None: the flag takes a value)
    metavar: str | None = None


KNOBS: tuple[Knob, ...] = (
    Knob("TRAIN_LOG_DIR", "--log-dir", "where every output goes (default: the current directory)",
         metavar="DIR"),
    Knob("DEVICE", "--device", "auto (cuda if torch sees a GPU), cuda, or cpu (the CPU profile)",
         metavar="auto|cuda|cpu"),
    Knob("MP_PROCS", "--mp-procs", "processes for mp on the CPU (default 2)", metavar="N"),
    Knob("NNODES", "--nnodes", "nodes of a multi-node run (torchrun rendezvous; default 1)",
         metavar="N"),
    Knob("NODE_RANK", "--node-rank", "this node's rank (default 0)", metavar="R"),
    Knob("MASTER_ADDR", "--master-addr", "rendezvous host (default 127.0.0.1)", metavar="HOST"),
    Knob("MASTER_PORT", "--master-port", "rendezvous port (default: a free one)", metavar="PORT"),
    Knob("BENCH_TIMEOUT", "--timeout", "end the run after this long (900, 15m, 1h; default 900 s)",
         metavar="DURATION"),
    Knob("LOG_INTERVAL", "--log-interval", "iterations per log window (default 10)", metavar="N"),
    Knob("CROP", "--crop", "training crop, e.g. 256x512 (default: the model's)", metavar="HxW"),
    Knob("DATA_ROOT", "--data-root", "a Cityscapes-layout tree (default ./data/cityscapes)",
         metavar="DIR"),
    Knob("REPEAT", "--repeat", "run the case N times; FINAL_RESULT = the median run", metavar="N"),
    Knob("PROFILING", "--profiler", "capture a torch.profiler trace of --profiler-iters",
         set_to="true"),
    Knob("PROFILE_ITERS", "--profiler-iters", "the profiled iterations (default 50-60)",
         metavar="FIRST-LAST"),
    Knob("FLOPS", "--no-flops", "skip the one-off FLOP count before iteration 1", set_to="false"),
    Knob("CPU_AFFINITY", "--cpu-affinity", "run the case's processes on these CPUs only (0-7, 0,2,4)",
         metavar="LIST"),
    Knob("CUDNN_BENCHMARK", "--no-cudnn-benchmark", "cuDNN's benchmark off (a diagnosis)",
         set_to="false"),
    Knob("SEGBENCH_VERBOSE", "--verbose", "echo all training output (it is always in the log)",
         set_to="1"),
    Knob("TUNED", "--tuned", "the tuned mode: all, or a comma list of switches (docs/TUNED.md)",
         metavar="LIST"),
    Knob("TUNED_COMPILE_MODE", "--compile-mode",
         "with the compile switch: auto, default, max-autotune or reduce-overhead", metavar="MODE"),
    Knob("TUNED_COMPILE_SCOPE", "--compile-scope", "with the compile switch: modules or train_step",
         metavar="SCOPE"),
    Knob("TUNED_PROOF", "--tuned-proof", "with TUNED: check the tuned step's equivalence to stock "
         "first; the sidecar carries the verdict", set_to="1"),
    Knob("STACK", "--stack", "mmseg1 (default) or mmseg0: mmseg 0.30 + mmcv 1.7.2 (docs/LEGACY.md)",
         metavar="mmseg1|mmseg0"),
)


def add_flags(parser) -> None:
    """Add every knob's flag to an argparse parser (dest = the environment variable)."""
    group = parser.add_argument_group("case settings (each also an environment variable)")
    for k in KNOBS:
        text = f"{k.help} [{k.env}]"
        if k.set_to is None:
            group.add_argument(k.flag, dest=k.env, metavar=k.metavar, help=text)
        else:
            group.add_argument(k.flag, dest=k.env, action="store_const", const=k.set_to, help=text)


def environ_from(args, base) -> dict:
    """``base`` (a mapping of environment variables) with the knobs given as flags set."""
    out = dict(base)
    for k in KNOBS:
        value = getattr(args, k.env, None)
        if value is not None:
            out[k.env] = value
    return out


# Not knobs: environment variables that change how torch, CUDA or NCCL run a step -- its speed,
# what fits in memory, its numerics -- and stay out of the case's name (the seed's platform parses
# it): recorded with every figure (segbench.env.collect's runtime_env). A named list, not
# prefixes: images set PYTORCH_VERSION, NCCL_VERSION and the like, which say nothing about the run.
RUNTIME_VARS = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF", "PYTORCH_NO_CUDA_MEMORY_CACHING",
                "CUDA_LAUNCH_BLOCKING", "CUDA_DEVICE_MAX_CONNECTIONS", "CUDA_MODULE_LOADING",
                "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
                "TORCH_CUDNN_V8_API_DISABLED", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NCCL_ALGO", "NCCL_PROTO", "NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "NCCL_SHM_DISABLE",
                "NCCL_NVLS_ENABLE", "NCCL_P2P_LEVEL", "NCCL_BUFFSIZE")


RUNTIME_PREFIXES = ("TORCHINDUCTOR_",)   # torch.compile's settings (the tuned compile switch)


def runtime_env(environ=os.environ) -> dict:
    """The RUNTIME_VARS (and RUNTIME_PREFIXES) that are set, as set: the part of the environment
    a figure depends on."""
    return {k: environ[k] for k in (*RUNTIME_VARS, *sorted(k for k in environ
                                                           if k.startswith(RUNTIME_PREFIXES)))
            if k in environ}
