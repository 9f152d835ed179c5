# Mask R-CNN, FPN, 1x schedule on COCO2017 with a FasterNet-S backbone: arXiv 2303.03667v3 Sec. 4.4
# and appendix Table 7 (repro: papers/fasternet/table4_box.yaml / table4_mask.yaml, preset paper_coco).
# Needs the optional mmdet environment (docs/detection.md). Train with mmdet's tools/train.py or:
#   python -c "from mmengine.config import Config; from mmengine.runner import Runner; \
#              Runner.from_cfg(Config.fromfile('configs/mmdet/mask-rcnn_fasternet-s_fpn_1x_coco.py')).train()"
# For M / L: variant "m" / "l", drop_path_rate 0.2 / 0.3, lr 0.0001, neck in_channels from 144 / 192.
_base_ = "mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py"  # mmdet's 1x Mask R-CNN: 800/1333, StepLR 8/11

custom_imports = dict(imports=["repro.nn.mmdet_backbones"], allow_failed_imports=False)

embed_dim = 128  # FasterNet-S (appendix Table 8): stage widths 128, 256, 512, 1024
model = dict(
    backbone=dict(
        _delete_=True,
        type="ReproBackbone",
        paper="fasternet",
        name="fasternet",
        args=dict(variant="s", drop_path_rate=0.15),  # appendix Table 7: Stoch. Depth 0.15 for S
        # ImageNet weights: a finished repro run of papers/fasternet/table3 (row s), e.g.
        # checkpoint="runs/<cell id>/checkpoints/last.ckpt"
        checkpoint=None,
    ),
    neck=dict(in_channels=[embed_dim, embed_dim * 2, embed_dim * 4, embed_dim * 8]),
)

# Appendix Table 7: AdamW, lr 0.0002 (S), weight decay 0.0001, batch 16 (2 images on each of 8 GPUs).
optim_wrapper = dict(_delete_=True, type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=0.0002, weight_decay=0.0001))
train_dataloader = dict(batch_size=2)
# Appendix Table 7: linear warm-up for 500 iterations; StepLR x0.1 at epochs 8 and 11 of 12.
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),  # start factor: mmdet default (not stated)
    dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
train_cfg = dict(max_epochs=12)
auto_scale_lr = dict(enable=False, base_batch_size=16)
