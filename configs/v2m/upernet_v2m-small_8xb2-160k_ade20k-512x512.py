# UperNet, v2m-small (the V2M paper's V2M-B* backbone): VMamba small-s2l15 with every block's
# SS2D replaced by V2M's 2D SSM, ADE20K, 512x512 crops, 160k iterations of 16 images (8 GPUs x
# 2): VMamba's UperNet config and recipe, only the mixer and the backbone's checkpoint differ.
_base_ = ['../upernet/upernet_vmamba-small-s2l15_8xb2-160k_ade20k-512x512.py']

# Backbone initialisation: no official release trains this arch; train the ImageNet-1k classifier
# first (tools/dist_train.sh configs/v2m/v2m-small_8xb128_in1k.py 8) and copy its last checkpoint to
# this path (a missing file stops the run when the weights are initialised).
backbone_checkpoint = 'checkpoints/v2m-small_in1k.pth'

model = dict(backbone=dict(arch='v2m-small', init_cfg=dict(checkpoint=backbone_checkpoint)))
