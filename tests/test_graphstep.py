"""segbench.graphstep (the tuned switch ``graph``) on the CPU, where a replay re-runs the captured
step on the static tensors (graphstep.Rerun): the graphed step trains exactly what the eager step
trains, batch by batch and learning rate by learning rate; what it cannot capture is refused."""
import json
import subprocess
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.structures import PixelData
from mmseg.models.decode_heads import decode_head
from mmseg.models.losses.accuracy import accuracy
from mmseg.structures import SegDataSample

from segbench import configs, graphstep, tuned

STEPS = 5
REPO = Path(__file__).resolve().parent.parent


class Toy(BaseModel):
    """conv-BN-conv with a segmentation loss and mmseg's accuracy as its decode heads call it (a
    name in mmseg.models.decode_heads.decode_head), the loss dict of a decode head."""
    host_read = False   # a test's switch: a boolean-mask index in the loss, as mmseg's accuracy has

    def __init__(self):
        super().__init__(data_preprocessor=dict(type="BaseDataPreprocessor"))
        self.conv, self.bn = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Conv2d(4, 5, 1)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        logits = self.head(torch.relu(self.bn(self.conv(inputs))))
        gt = torch.stack([s.gt_sem_seg.data.squeeze(0) for s in data_samples]).long()
        loss = F.cross_entropy(logits, gt, ignore_index=255)
        if self.host_read:
            loss = loss + 0 * logits.sum(1)[gt != 255].mean()
        return {"loss_ce": loss, "acc_seg": decode_head.accuracy(logits, gt, ignore_index=255)}


def batch(i, hw=(8, 8)):
    g = torch.Generator().manual_seed(100 + i)
    gt = torch.randint(0, 5, (2, 1, *hw), generator=g)
    gt[:, :, 0] = 255
    return {"inputs": torch.randn(2, 3, *hw, generator=g),
            "data_samples": [SegDataSample(gt_sem_seg=PixelData(data=gt[j])) for j in range(2)]}


def train(graphed, monkeypatch=None, broken=None, compiled=None):
    torch.manual_seed(0)
    model = Toy()
    if compiled is not None:   # as tuned.compile_modules binds a part's compiled forward
        model.forward = types.MethodType(torch.compile(Toy.forward, backend=compiled), model)
    ow = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4))
    ow.initialize_count_status(model, 0, STEPS)
    lr_kinds = []   # what the optimizer's step sees: a captured step must read a tensor
    ow.optimizer.register_step_pre_hook(
        lambda opt, *_: lr_kinds.append(type(opt.param_groups[0]["lr"]).__name__))
    if graphed:
        graphstep.install(model, ow, warmup=1)
        if broken:
            monkeypatch.setattr(graphstep.GraphedTrainStep, broken, lambda *a: None)
    losses = []
    for i in range(STEPS):
        for group in ow.optimizer.param_groups:      # a schedule, as mmengine's schedulers write it
            group["lr"] = 0.1 * (1 - i / STEPS)
        losses.append(float(model.train_step(batch(i), ow)["loss"].detach()))
    return losses, torch.cat([t.detach().flatten() for t in model.state_dict().values()
                              if t.is_floating_point()]), ow._inner_count, lr_kinds


def test_the_graphed_step_trains_what_the_eager_step_trains():
    stock, graphed = train(False), train(True)
    assert stock[2] == graphed[2] == STEPS                  # the optimizer's counts
    assert graphed[0] == pytest.approx(stock[0], rel=1e-6)  # each step's loss: each step's batch
    assert torch.allclose(graphed[1], stock[1], rtol=1e-5, atol=1e-7)   # weights, BN statistics
    # step 1 eager (the scheduler's float), the captured step and its replays: the graph's tensor
    assert stock[3] == ["float"] * STEPS and graphed[3] == ["float"] + ["Tensor"] * (STEPS - 1)


def test_a_compiled_forward_inside_the_graphed_step_trains_what_the_eager_step_trains(monkeypatch):
    """TUNED=...,compile,graph: the compiled forward is what the captured step runs, every step.
    Dynamo runs no compiled frame under a Python dispatch mode, so the stand-in's host-read check
    (NoHostReads, which a GPU's capture does not use) is off here."""
    import contextlib
    monkeypatch.setattr(graphstep.Rerun, "strict", staticmethod(contextlib.nullcontext))
    runs = []

    def backend(gm, example_inputs):   # dynamo's graph, run as is and counted (quick on a CPU)
        def run(*args):
            runs.append(1)
            return gm.forward(*args)
        return run
    stock, graphed = train(False), train(True, compiled=backend)
    assert len(runs) >= STEPS          # steps 1 (eager), 2 (captured) and each replay
    assert graphed[0] == pytest.approx(stock[0], rel=1e-6)
    assert torch.allclose(graphed[1], stock[1], rtol=1e-5, atol=1e-7)


def test_compile_with_graph_resolves_auto_to_default_everywhere(tmp_path, monkeypatch):
    """With graph, compile's ``auto`` is ``default`` on a GPU too (inductor's own CUDA graphs
    cannot run inside the captured step): the hook, the case, its name and the report's token."""
    from types import SimpleNamespace

    from mmengine.registry import HOOKS

    from segbench import launch, results
    both = tuned.parse_switches("all,compile,graph")
    tuned.register()
    on_gpu = SimpleNamespace(device=SimpleNamespace(type="cuda"))   # a parameter's device
    gpu_model = SimpleNamespace(parameters=lambda: iter([on_gpu]))
    for switches, want in ((both, "default"), (tuned.DEFAULT_SWITCHES, "reduce-overhead")):
        modes, said = [], []
        monkeypatch.setattr(tuned, "compile_modules", lambda m, mode: modes.append(mode) or ["backbone"])
        cfg = next(dict(h) for h in tuned.hooks(switches) if h["type"] == tuned.COMPILE_HOOK)
        cfg.pop("priority")
        runner = SimpleNamespace(model=gpu_model, logger=SimpleNamespace(info=said.append))
        HOOKS.build(cfg).before_train(runner)
        assert modes == [want] and f"(mode {want})" in said[0]
    case = launch.parse_case(["segformer_b0", "sp", "fp32", "2", "50", "1"],
                             {"TRAIN_LOG_DIR": str(tmp_path), "TUNED": "all,compile,graph"})
    case.device = "cuda"
    assert case.compile_resolved == "default" and "-cm" not in case.name
    token = results.recorded_tokens({"tuned": list(both), "compile_mode": "default", "device": "cuda",
                                     "compile_scope": "modules"}, "segformer_b0")["tuned"]
    assert token == "tuned-" + "+".join(both)      # auto as run: no -cm token


def test_a_host_read_in_the_captured_step_fails_as_a_capture_would(monkeypatch):
    """mmseg's accuracy (a boolean-mask index) is swapped for the capturable one inside the step;
    a host read left in the loss fails on the CPU too (graphstep.NoHostReads), not only on a GPU."""
    monkeypatch.setattr(Toy, "host_read", True)
    train(False)                                           # eager: fine
    with pytest.raises(RuntimeError, match="reads the GPU on the host inside the captured step"):
        train(True)
    monkeypatch.setattr(Toy, "host_read", False)
    monkeypatch.setattr(graphstep, "capturable_accuracy", accuracy)   # mmseg's own, with its read
    with pytest.raises(RuntimeError, match="reads the GPU on the host"):
        train(True)


@pytest.mark.parametrize("broken", ["_load", "_set_lrs"])
def test_a_replay_on_a_stale_batch_or_learning_rate_differs(monkeypatch, broken):
    """Without the copy of each batch into the static one, or of the schedule's learning rate into
    the graph's tensors, the graphed run trains something else: what the test above would catch."""
    stock, graphed = train(False), train(True, monkeypatch, broken)
    assert not torch.allclose(graphed[1], stock[1], rtol=1e-5, atol=1e-7)
    if broken == "_load":
        assert graphed[0][2:] != pytest.approx(stock[0][2:], rel=1e-6)


def test_another_shape_is_a_one_line_error():
    torch.manual_seed(0)
    model = Toy()
    ow = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    ow.initialize_count_status(model, 0, 3)
    graphstep.install(model, ow, warmup=1)
    model.train_step(batch(0), ow)
    model.train_step(batch(1), ow)
    with pytest.raises(RuntimeError, match="needs every batch the same shape"):
        model.train_step(batch(2, hw=(8, 16)), ow)


def test_what_one_captured_step_cannot_do_is_refused():
    model = Toy()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="fp32 only"):
        graphstep.check(model, AmpOptimWrapper.__new__(AmpOptimWrapper))   # (built on a GPU only)
    with pytest.raises(RuntimeError, match="no gradient accumulation"):
        graphstep.check(model, OptimWrapper(sgd, accumulative_counts=2))
    wrapped = torch.nn.Module()
    wrapped.module = model                 # a DDP-style wrapper (mmengine's MMDistributedDataParallel)
    with pytest.raises(RuntimeError, match="one process only"):
        graphstep.check(wrapped, OptimWrapper(sgd))
    graphstep.check(model, OptimWrapper(sgd))


@pytest.mark.parametrize("shape, topk, thresh", [((2, 5, 6, 7), 1, None), ((2, 5, 6, 7), (1, 2), None),
                                                ((40, 5), 1, 0.3)])   # mmseg's thresh takes (N, C) only
def test_capturable_accuracy_is_mmseg_accuracy(shape, topk, thresh):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(*shape, generator=g).softmax(1)
    target = torch.randint(0, 5, (shape[0], *shape[2:]), generator=g)
    target[:3] = 255
    for ignore in (255, None):
        want = accuracy(pred, target, topk=topk, thresh=thresh, ignore_index=ignore)
        got = graphstep.capturable_accuracy(pred, target, topk=topk, thresh=thresh, ignore_index=ignore)
        for w, v in zip(*((want, got) if isinstance(topk, tuple) else ([want], [got]))):
            assert float(v) == pytest.approx(float(w), rel=1e-6)


@pytest.mark.parametrize("weights", [False, True])
def test_capturable_expand_onehot_labels_is_mmsegs(weights):
    from mmseg.models.losses.cross_entropy_loss import _expand_onehot_labels
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 5, (2, 6, 7), generator=g)
    labels[0, :2] = 255
    w = torch.rand(2, 6, 7, generator=g) if weights else None
    for a, b in zip(_expand_onehot_labels(labels, w, (2, 5, 6, 7), 255),
                    graphstep.capturable_expand_onehot_labels(labels, w, (2, 5, 6, 7), 255)):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_the_switch_all_graph_and_its_rules():
    assert tuned.parse_switches("all,graph") == tuple(
        s for s in tuned.DEFAULT_SWITCHES if s != "compile") + ("graph",)
    assert "graph" not in tuned.parse_switches("all")                  # opt-in
    assert tuned.hooks(("graph",))[-1] == {"type": tuned.GRAPH_HOOK, "priority": "LOW"}
    s = dict(model="fastscnn", batch_size=2, max_iters=50, num_workers=1)
    for switches, extra, why in [(("compile", "foreach", "graph"), {"compile_scope": "train_step"},
                                  "compile scope modules only"),
                                 (("compile", "foreach", "graph"), {"compile_mode": "reduce-overhead"},
                                  "auto or default, not reduce-overhead"),
                                 (("compile", "foreach", "graph"), {"compile_mode": "max-autotune"},
                                  "auto or default, not max-autotune"),
                                 (("foreach", "graph"), {"distributed": True}, "one process"),
                                 (("foreach", "graph"), {"precision": "bf16"}, "fp32 only"),
                                 (("graph",), {}, "needs the foreach switch")]:
        with pytest.raises(ValueError, match=why):
            tuned.validate(configs.TrainSettings(**s, tuned=switches, **extra))
    tuned.validate(configs.TrainSettings(**s, tuned=("graph",), device="cpu"))
    # compile stays where it is named: its kernels inside the graph, inductor without CUDA graphs
    both = tuned.parse_switches("all,compile,graph")
    assert both == tuned.DEFAULT_SWITCHES + ("graph",)
    tuned.validate(configs.TrainSettings(**s, tuned=both))
    assert tuned.resolve_compile_mode("auto", "cuda", graph=True) == "default"
    assert {"type": tuned.COMPILE_HOOK, "mode": "auto", "graph": True, "priority": "HIGH"} in \
        tuned.hooks(both)
    assert {"type": tuned.COMPILE_HOOK, "mode": "auto", "priority": "HIGH"} in tuned.hooks(
        tuned.DEFAULT_SWITCHES)
    cfg = tuned.build(configs.TrainSettings("segformer_b0", 2, 50, 1, tuned=("foreach", "graph")))
    assert cfg.optim_wrapper.optimizer.capturable is True and cfg.optim_wrapper.optimizer.fused is True


def test_equivalence_of_the_graphed_step_on_a_real_model(small_data, monkeypatch):
    """segbench equivalence with the switch: fastscnn's real mmseg step, step 1 eager, 2 captured,
    3 replayed on a new batch; with the batch copy broken, the check fails."""
    from segbench import equivalence
    kw = dict(iters=3, crop=(64, 128), data_root=small_data, control=False, reference=False)
    r = equivalence.equivalence("fastscnn", ("graph",), **kw)
    assert r["ok"], r
    assert r["max_loss_rel_diff"] <= 1e-5 and r["max_state_rel_diff"] <= 1e-3
    monkeypatch.setattr(graphstep.GraphedTrainStep, "_load", lambda *a: None)
    bad = equivalence.equivalence("fastscnn", ("graph",), **kw)
    assert not bad["ok"] and bad["loss_rel_diff"][2] > 1e-3
    with pytest.raises(ValueError, match="--iters 3 or more"):
        equivalence.equivalence("fastscnn", ("graph",), **dict(kw, iters=2))
    # fastscnn's sigmoid cross-entropy: mmseg's own one-hot expansion reads the GPU (nonzero)
    from mmseg.models.losses import cross_entropy_loss
    monkeypatch.undo()
    monkeypatch.setattr(graphstep, "capturable_expand_onehot_labels",
                        cross_entropy_loss._expand_onehot_labels)
    with pytest.raises(RuntimeError, match="reads the GPU on the host"):
        equivalence.equivalence("fastscnn", ("graph",), **kw)


def test_a_case_with_all_graph_runs_through_run_benchmark(cpu_env):
    """TUNED=all,graph: every default switch with graph in place of compile, through the real
    trainer (the hook installs the step before training; the CPU's stand-in says so)."""
    env = dict(cpu_env, CROP="64x128", TUNED="all,graph")
    r = subprocess.run(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2", "12", "1"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    case = ("fastscnn_sp_bs2_fp32_1_tuned-channels_last+foreach+loader+workers+non_blocking+tf32+graph"
            "_crop64x128_li2")
    log_dir = Path(env["TRAIN_LOG_DIR"])
    speed = json.loads((log_dir / f"{case}_speed").read_text(encoding="utf-8"))
    assert speed["JOB_FAIL_FLAG"] == 0 and speed["FINAL_RESULT"] > 0
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["tuned"] == [*(s for s in tuned.DEFAULT_SWITCHES if s != "compile"), "graph"]
    text = (log_dir / case).read_text(encoding="utf-8")
    assert "whole train step captured in a re-run stand-in (no GPU: no speed-up) after 3 eager" in text
    assert "torch.compile" not in text
