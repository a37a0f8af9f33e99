"""Golden model: trainable fake-quant quantizers (PyTorch) and the bit-exact integer datapath (numpy)."""

# --- trainable quantizers and quantized layers (PyTorch) -----------------------------------
# Imported on first attribute access (PEP 562), so numpy-only users of golden.spec do not pay
# for importing torch.  Other lazy exports can join _LAZY_EXPORTS.
_LAZY_EXPORTS = {
    "LSQQuantizer": "golden.quantizers",
    "ASQQuantizer": "golden.quantizers",
    "PowerQuantizer": "golden.quantizers",
    "APoTQuantizer": "golden.quantizers",
    "LCQQuantizer": "golden.quantizers",
    "QuantConv2d": "golden.layers",
    "QuantLinear": "golden.layers",
    "quantize_model": "golden.layers",
    "calibrate": "golden.layers",
    "clamp_scales_": "golden.layers",
    "save_checkpoint": "golden.layers",
    "load_checkpoint": "golden.layers",
    "SCHEMES": "golden.layers",
}


def __getattr__(name: str):
    if name in _LAZY_EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'golden' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY_EXPORTS))
# --- end of quantizer exports ----------------------------------------------------------------

# --- bit-exact integer model, float-vs-integer bounds and export (numpy; export needs torch) ---
_LAZY_EXPORTS.update(
    {name: "golden.stages" for name in ("Codes", "Accumulators", "AsqAdapter", "OutputStage", "Residual")}
    | {name: "golden.integer" for name in ("IntegerLayer", "IntegerNetwork", "requantize_channels", "threshold_channels")}
    | {name: "golden.gemm" for name in ("int_gemm", "int_gemm_reference", "int_conv2d", "int_linear", "im2col")}
    | {"export_model": "golden.export", "ExportReport": "golden.quantizer_export", "layer_bound": "golden.bounds", "real_forward": "golden.bounds"}
)
# --- end of integer-model exports ------------------------------------------------------------
