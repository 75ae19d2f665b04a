"""The Ray runtime: the same physical graph, operators, subtask loop and checkpoints as the
local runtime, with each subtask in a Ray actor (docs/ray.md). Ray is an optional extra
(``pip install 'caudal[ray]'``); nothing here is imported unless ``--runtime ray`` is asked."""
