"""Dense multi-task vision benchmarks (NYUv2, Cityscapes 2- and 3-task) with the same aggregators.

Modules, one job each:

* ``specs``: tasks, label folders, metrics and default baselines of each benchmark;
* ``npy_dataset``, ``cityscapes_raw``, ``datasets``, ``augment``: loading and augmentation;
* ``models``: SegNet split, MTAN, dilated ResNet + pyramid pooling heads;
* ``losses``, ``metrics``, ``delta_m``: training losses, whole-split metrics, Delta_m;
* ``update``: per-task gradients (parameters or shared representation) -> aggregator -> .grad;
* ``trainer``, ``evaluation``, ``config``: the ``mtrl-align vision`` commands' library side;
* ``mt2o_problems``: NYUv2 / Cityscapes as MT2O problems;
* ``synthetic_data``: writers of tiny generated datasets in every on-disk format.
"""
