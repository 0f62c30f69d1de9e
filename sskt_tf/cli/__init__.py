"""The command-line tools, also installed as console scripts.

========================  =============================  ========================================
module                    console script                 also runs as
========================  =============================  ========================================
``train``                 ``sskt-train``                 ``python tools/train.py``
``export``                ``sskt-export``                ``python tools/export.py``
``cache_soft_labels``     ``sskt-cache-soft-labels``     ``python tools/cache_soft_labels.py``
``convert_torch_resnet``  ``sskt-convert-torch-resnet``  ``python tools/convert_torch_resnet.py``
``inspect_soft_labels``   ``sskt-inspect-soft-labels``   ``python tools/inspect_soft_labels.py``
``rank_sources``          ``sskt-rank-sources``          ``python tools/rank_sources.py``
``flag_reference``        (none)                         ``python -m sskt_tf.cli.flag_reference``
========================  =============================  ========================================

``tool`` holds what they share: flag errors and failures end as one ``error: ...``
line and an exit code (2 bad input, 3 a diverged run, 75 a run stopped by SIGTERM or Ctrl-C
after its backup, 130 a second Ctrl-C). ``flag_reference`` writes the documentation's flag
reference (``docs/reference/flags.md``) from :class:`~sskt_tf.training.config.TrainConfig`.
"""
