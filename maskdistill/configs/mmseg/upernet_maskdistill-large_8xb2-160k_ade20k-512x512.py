# UperNet + MaskDistill ViT-L/16 on ADE20K, 512x512, 160k iterations: beit2's ViT-L config unchanged (lr 4e-5,
# layer decay 0.9, drop path 0.2, layer scale 1e-5 as maskdistill's L student, blocks 7, 11, 15, 23).
# Expected: about 56-57 mIoU (the paper's L/16 figure is not verified; card section 5).
#   python -m maskdistill.segment --config upernet_maskdistill-large_8xb2-160k_ade20k-512x512.py \
#       --set model.backbone.pretrained=maskdistill_large_pt.pth
_base_ = ["../../../beit2/configs/mmseg/upernet_beitv2-large_8xb2-160k_ade20k-512x512.py"]
custom_imports = dict(imports=["beit2.mmseg"], allow_failed_imports=False)

model = dict(backbone=dict(pretrained=None))  # a MaskDistill pretraining checkpoint (raw or maskdistill.convert'ed)
