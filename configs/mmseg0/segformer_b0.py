# segbench, the mmseg 0.30 / mmcv 1.x stack (STACK=mmseg0): SegFormer MiT-B0 on Cityscapes 1024x1024.
# mmseg 0.30's own config (shipped in the mmsegmentation wheel under mmseg/.mim/configs), set
# up to measure training speed.
# Crop, batch size, workers, iterations, precision and data root are set by the harness
# (segbench.legacy.run) as --cfg-options. Plain tools/train.py runs this file unchanged with the
# checkout on PYTHONPATH (custom_imports: the fixes of docs/LEGACY.md and the timing hook).
import importlib.util as _util
import os.path as _osp

_base_ = _osp.join(_osp.dirname(_util.find_spec('mmseg').origin), '.mim', 'configs',
                   'segformer', 'segformer_mit-b0_8x1_1024x1024_160k_cityscapes.py')

model = dict(backbone=dict(init_cfg=None))  # random init: no ImageNet download
custom_imports = dict(imports=['segbench.legacy.compat', 'segbench.legacy.hooks'],
                      allow_failed_imports=False)
# the per-iteration file (docs/FORMATS.md): written when the harness sets out_prefix
custom_hooks = [dict(type='SegbenchIterHook0', out_prefix=None, priority='LOWEST')]
runner = dict(type='IterBasedRunner', max_iters=500)
checkpoint_config = dict(by_epoch=False, interval=10**9, save_last=False)
log_config = dict(interval=10)
cudnn_benchmark = True
# the train set wrapped in mmseg's RepeatDataset: times=1 is the set itself; the harness sets times
# so that a run is one pass and never meets mmcv 1.x's 2 s sleep at a pass's end (docs/LEGACY.md)
data = dict(train=dict(_delete_=True, type='RepeatDataset', times=1, dataset={{_base_.data.train}}))
