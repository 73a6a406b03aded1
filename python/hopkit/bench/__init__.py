"""The comparison runner: hopkit and its peers timed in one process, side by
side, on graphs shaped like real recommender data. ``python -m hopkit.bench
spmm`` (or ``hopkit bench spmm``); each group is a module ``hopkit.bench.<group>``
with ``run(quick=False) -> list[dict]`` returning result rows (see
``_common.row``)."""
