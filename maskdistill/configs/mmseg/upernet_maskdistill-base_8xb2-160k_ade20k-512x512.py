# UperNet + MaskDistill ViT-B/16 on ADE20K, 512x512, 160k iterations: beit2's plug-in and config unchanged
# (the paper: "as BEiT v2"; its exact segmentation hyper-parameters are not published): lr 5e-5, layer decay
# 0.75, drop path 0.15, blocks 3, 5, 7, 11, batch 8 x 2. Expected: 53.8 mIoU (paper, CLIP-B/16 teacher,
# 300 epochs); 52.6 in the public re-implementation.
#   python -m maskdistill.convert --input runs/pretrain_base_300e --output maskdistill_base_pt.pth
#   python -m maskdistill.segment --config upernet_maskdistill-base_8xb2-160k_ade20k-512x512.py \
#       --set model.backbone.pretrained=maskdistill_base_pt.pth \
#       --set train_dataloader.dataset.data_root=/data/ade/ADEChallengeData2016
_base_ = ["../../../beit2/configs/mmseg/upernet_beitv2-base_8xb2-160k_ade20k-512x512.py"]
custom_imports = dict(imports=["beit2.mmseg"], allow_failed_imports=False)

model = dict(backbone=dict(pretrained=None))  # a MaskDistill pretraining checkpoint (raw or maskdistill.convert'ed)
