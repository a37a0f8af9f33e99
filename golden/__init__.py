"""Golden model: trainable fake-quant quantizers (PyTorch) and the bit-exact integer datapath (numpy)."""
