"""The benchmark scripts without a GPU-only part still run against the current package (one of
them once broke silently when the hook it drives changed): each on the CPU, tiny, its output read."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import loader_cost  # noqa: E402
import train_walk  # noqa: E402


def test_loader_cost_per_transform(small_data, capsys):
    assert loader_cost.main(["fastscnn", "--data-root", str(small_data), "--passes", "1"]) == 0
    out = capsys.readouterr().out
    assert "stock: 4 images" in out and "gpu_aug: 4 images" in out
    assert "LoadImageFromFile" in out and "PackSegInputs" in out


def test_train_walk_counts_modules_and_the_switch_makes_the_call_cheap(capsys):
    assert train_walk.main(["--models", "fastscnn", "--n", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "model,modules,train_ms,train_once_ms"
    name, modules, stock, once = lines[-1].split(",")
    assert name == "fastscnn" and int(modules) > 100 and float(stock) > float(once) >= 0
