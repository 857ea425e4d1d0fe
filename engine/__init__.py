"""Training and evaluation of CSAKD: the co-training loop (``engine.train``), evaluation and timing
(``engine.evaluate``), the full training state (``engine.state``), data loaders with input checks
(``engine.loaders``), the training-time AWGN (``engine.noise``) and TensorBoard figures (``engine.visualize``).
"""
