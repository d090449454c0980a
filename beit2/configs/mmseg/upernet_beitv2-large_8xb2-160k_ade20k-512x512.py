# UperNet + BEiT v2 ViT-L/16 on ADE20K, 512x512, 160k iterations: lr 4e-5, layer decay 0.9,
# drop path 0.2, features of blocks 7, 11, 15, 23. Expected: 56.7 mIoU (57.5 from the 21k checkpoint, lr 3e-5).
#   mmengine Runner.from_cfg(Config.fromfile(this file)) with model.backbone.pretrained=beitv2_large_patch16_224_pt1k.pth
_base_ = ["./upernet_beitv2-base_8xb2-160k_ade20k-512x512.py"]

model = dict(
    backbone=dict(embed_dim=1024, depth=24, num_heads=16, init_values=1e-5, drop_path_rate=0.2,
                  out_indices=(7, 11, 15, 23)),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024),
)
optim_wrapper = dict(optimizer=dict(lr=4e-5), paramwise_cfg=dict(num_layers=24, layer_decay_rate=0.9))
