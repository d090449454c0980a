# UperNet + BEiT v2 ViT-B/16 on ADE20K, 512x512, 160k iterations (the paper's setting:
# beit2/semantic_segmentation/configs/beit/upernet/ in microsoft/unilm).
#   python tools/train.py (MMSegmentation) beit2/configs/mmseg/upernet_beitv2-base_8xb2-160k_ade20k-512x512.py \
#       --cfg-options model.backbone.pretrained=beitv2_base_patch16_224_pt1k.pth train_dataloader.dataset.data_root=/data/ade/ADEChallengeData2016
# or mmengine's Runner.from_cfg(Config.fromfile(this file)).train(). Expected: 53.1 mIoU single scale
# (53.5 from the ImageNet-21k intermediate checkpoint with layer_decay_rate 0.85).
_base_ = [
    "mmseg::_base_/models/upernet_beit.py",
    "mmseg::_base_/datasets/ade20k.py",
    "mmseg::_base_/default_runtime.py",
    "mmseg::_base_/schedules/schedule_160k.py",
]
custom_imports = dict(imports=["beit2.mmseg"], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="BEiTv2ViT",
        img_size=512,
        patch_size=16,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4,
        init_values=0.1,
        drop_path_rate=0.15,
        out_indices=(3, 5, 7, 11),
        pretrained=None,  # an official or our pretraining / fine-tuned checkpoint
    ),
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150),
    test_cfg=dict(mode="slide", crop_size=crop_size, stride=(341, 341)),
)

optim_wrapper = dict(
    _delete_=True,
    type="AmpOptimWrapper",
    optimizer=dict(type="AdamW", lr=5e-5, betas=(0.9, 0.999), weight_decay=0.05),
    constructor="BEiTv2LayerDecayOptimizerConstructor",
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.75),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", power=1.0, begin=1500, end=160000, eta_min=0.0, by_epoch=False),
]
# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
