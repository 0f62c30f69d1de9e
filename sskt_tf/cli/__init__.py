"""The command-line tools, also installed as console scripts.

========================  =============================  ========================================
module                    console script                 also runs as
========================  =============================  ========================================
``train``                 ``sskt-train``                 ``python tools/train.py``
``export``                ``sskt-export``                ``python tools/export.py``
``cache_soft_labels``     ``sskt-cache-soft-labels``     ``python tools/cache_soft_labels.py``
``convert_torch_resnet``  ``sskt-convert-torch-resnet``  ``python tools/convert_torch_resnet.py``
``inspect_soft_labels``   ``sskt-inspect-soft-labels``   ``python tools/inspect_soft_labels.py``
========================  =============================  ========================================

``tool`` holds what they share: flag errors and failures end as one ``error: ...``
line and an exit code (2 bad input, 3 a diverged run).
"""
