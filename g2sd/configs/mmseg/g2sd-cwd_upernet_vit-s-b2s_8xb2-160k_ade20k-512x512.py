# G2SD specific distillation for ADE20K semantic segmentation: UperNet on a ViT-S student (from the
# generic-distillation checkpoint) distilled from a fine-tuned MAE ViT-B UperNet teacher with channel-wise
# divergence of the logits (tau 1, weight 3). 160k iterations, batch 16 (8 GPUs x 2), AdamW 1e-4, layer decay
# 0.65, linear warm-up 1,500 iterations then poly decay. Paper: 99.3 % of the teacher's mIoU (48.1).
#
#   python tools/train.py g2sd/configs/mmseg/g2sd-cwd_upernet_vit-s-b2s_8xb2-160k_ade20k-512x512.py   # mmseg's train.py
#
# Needs ADE20K in data/ade/ADEChallengeData2016, the student encoder converted to mmseg names
# (python -m g2sd.convert seg-init ViT_S_GD.pth checkpoints/vit-s_g2sd-gd_mmseg.pth) and the teacher
# (mmseg's MAE-B UperNet, or an official G2SD checkpoint converted with python -m g2sd.convert seg).
_base_ = ['mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py']
custom_imports = dict(imports=['g2sd.mmseg'], allow_failed_imports=False)
teacher_checkpoint = 'checkpoints/upernet_mae-base_ade20k-512x512.pth'
model = dict(
    type='G2SDDistillEncoderDecoder',
    pretrained=None,
    backbone=dict(embed_dims=384, num_heads=6,
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vit-s_g2sd-gd_mmseg.pth')),
    neck=dict(embed_dim=384),
    decode_head=dict(in_channels=[384, 384, 384, 384], channels=384),
    auxiliary_head=dict(in_channels=384),
    teacher=dict(cfg={{_base_.model}}, checkpoint=teacher_checkpoint),
    distill=dict(tau=1.0, loss_weight=3.0))
