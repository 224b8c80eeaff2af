# segbench: OCRNet + HRNetV2-W48 on Cityscapes, mmseg's own config, set up to measure training
# speed. Crop, batch size, workers, iterations, precision and data root are set by the harness
# (segbench.configs), not here. Plain mmseg tools/train.py runs this file unchanged.
_base_ = 'mmseg::ocrnet/ocrnet_hr48_4xb2-40k_cityscapes-512x1024.py'

model = dict(pretrained=None)  # random init: no ImageNet download
train_cfg = dict(type='IterBasedTrainLoop', max_iters=500, val_interval=500)
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=-1, save_last=False))
env_cfg = dict(cudnn_benchmark=True)
