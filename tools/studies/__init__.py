"""The tools' own library: the reproduction harness, learning curves and the digits study.

Not part of the installed ``sskt_tf`` package: it runs ``tools/train.py`` from this
checkout and reads the tables under ``configs/``. The scripts in ``tools/`` import it
as ``studies`` (their directory is on ``sys.path`` when they run).

===================  ==================================================================
``harness``          table.json grids of ``tools/train.py`` runs, collected into tables
``learning_curves``  mean ± std learning curves over seeds from ``history.csv`` files
``digits``           scikit-learn's digits as an image folder, for the CPU study
===================  ==================================================================
"""
