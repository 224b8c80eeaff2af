"""Stand-in for ``mmcv._ext`` (mmcv's compiled operators) on the mmcv-lite flavour.

segbench's PrepareEnv.sh copies this file to ``<site-packages>/mmcv/_ext.py`` when mmcv-lite is
installed. mmsegmentation 1.2.2 imports ``mmcv.ops`` unconditionally, and ``mmcv.ops`` loads
``mmcv._ext`` at import time, so without a module of that name no mmseg model registers. The three
benchmarked models (fastscnn, ocrnet_hrnetw48, segformer_b0) call no compiled operator; any model
that does gets a clear error at the call, never a silent fallback.
"""

SEGBENCH_STANDIN = True
_FLAVOUR = "mmcv-lite + segbench stand-in for mmcv._ext (no compiled ops)"


class CompiledOpUnavailable(RuntimeError):
    """Raised when code calls an mmcv compiled operator that the lite flavour lacks."""


def get_compiler_version() -> str:
    return "none (" + _FLAVOUR + ")"


def get_compiling_cuda_version() -> str:
    return "none (" + _FLAVOUR + ")"


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)

    def _unavailable(*_args, **_kwargs):
        raise CompiledOpUnavailable(
            f"mmcv compiled op '{name}' was called, but this environment has {_FLAVOUR}. "
            "Rebuild the environment with MMCV_FLAVOR=full bash PrepareEnv.sh")

    _unavailable.__name__ = name
    return _unavailable
