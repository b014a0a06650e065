"""The CPU fast path: compiled loops for BatchNorm -> ReLU (-> Dropout) and the 2x2 max-pool, and a cheaper
dropout mask, put on any plain-torch model by `apply.accelerate`. It sits below models and engine (it imports
only torch, numpy, numba and mnistlite.errors); which runs take the unit is engine/bn_path.py's rule.

apply.py    accelerate(model): the one point where a model gets the fast path
unit.py     the fused BatchNorm-ReLU(-Dropout) unit, the compiled pool, FusedSequential
kernels.py  the numba glue: whether the loops run here, threads, numpy views
loops.py    the loops themselves (numba)
dropout.py  Dropout with a sparsely drawn mask"""
