"""Training and evaluation of CSAKD: the co-training loop (``engine.train``), evaluation and timing
(``engine.evaluate``), the full training state (``engine.state``), data loaders with input checks
(``engine.loaders``), the training-time AWGN (``engine.noise``), TensorBoard figures (``engine.visualize``), the
fast inference path (``engine.inference``), deployment (``engine.deploy``) and pansharpening scoring
(``engine.score`` with the toolbox indices of ``engine.pansharpening_metrics``).
"""
