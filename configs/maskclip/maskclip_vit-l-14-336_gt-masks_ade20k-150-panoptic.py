# MaskCLIP with ground-truth masks as proposals on ADE20K-150 panoptic (Table 7).
#   python tools/test.py ${THIS_CONFIG} <MaskCLIP checkpoint>
_base_ = ['./maskclip_vit-l-14-336_ade20k-150-panoptic.py']

model = dict(proposer=dict(_delete_=True, type='GTMaskProposer'))
