"""A small synthesis JSON with the schema `make synth` writes (transistor counts made up for tests)."""

# (pe_kind, weight_bits, act_bits, frac_bits, rows, cols, transistors)
UNITS = [
    ("int", 8, 8, 0, 2, 2, 4 * 3000),
    ("int", 4, 4, 0, 2, 2, 4 * 1200),
    ("pot", 4, 4, 8, 2, 2, 4 * 600),
    ("post_lut", 4, 4, 8, 2, 2, 4 * 900),
    ("post_shared", 4, 4, 8, 2, 2, 4 * 700),
    ("post_shared", 4, 4, 8, 4, 4, 16 * 650),
    ("lcq", 4, 4, 0, 2, 2, 4 * 1500),
    ("lcq_product", 4, 4, 0, 2, 2, 4 * 2500),
]


def synth_payload(units=UNITS):
    return {
        "yosys_version": "0.23 (test fixture)",
        "units": [
            {"name": f"{kind}_w{wb}a{ab}_{r}x{c}", "pe_kind": kind, "weight_bits": wb, "act_bits": ab, "frac_bits": f,
             "rows": r, "cols": c, "cells": t // 6, "transistors": t, "ice40_lut4": t // 20, "logic_depth": 12}
            for kind, wb, ab, f, r, c, t in units
        ],
    }
