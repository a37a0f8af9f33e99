"""A small synthesis JSON with the schema `make synth` (hw.synth) writes; the figures are made up for tests."""

from golden.spec import WeightFormat

POT_F, POST_F = WeightFormat("pot", 4).default_frac_bits, WeightFormat("post", 4).default_frac_bits  # the defaults
# (unit, pe_kind, weight_bits, act_bits, frac_bits, rows, cols, transistors per PE, flip-flops per PE)
UNITS = [
    ("array", "int", 8, 8, 0, 2, 2, 3000, 40),
    ("array", "int", 8, 8, 0, 4, 4, 2800, 40),
    ("array", "int", 4, 4, 0, 2, 2, 1200, 25),
    ("array", "pot", 4, 4, POT_F, 2, 2, 600, 30),
    ("array", "post_lut", 4, 4, POST_F, 2, 2, 900, 30),
    ("array", "post_shared", 4, 4, POST_F, 2, 2, 700, 32),
    ("array", "post_shared", 4, 4, POST_F, 4, 4, 650, 31),
    ("array", "lcq", 4, 4, 0, 2, 2, 1500, 30),
    ("array", "lcq_product", 4, 4, 0, 2, 2, 2500, 30),
    ("pe", "int", 2, 2, 0, 1, 1, 100, 0),  # a bare product unit: no array, so never priced
    ("requant", "int", 4, 4, 0, 1, 1, 5000, 60),
]


def logic_per_pe(transistors: int, dffs: int) -> int:
    return transistors - 16 * dffs


def synth_payload(units=UNITS):
    return {
        "yosys_version": "Yosys 0.23 (test fixture)",
        "units": [
            {"name": f"{unit}_{kind}_w{wb}a{ab}_{r}x{c}", "unit": unit, "pe_kind": kind, "weight_bits": wb, "act_bits": ab,
             "frac_bits": f, "rows": r, "cols": c, "cells": t * r * c // 6, "transistors": t * r * c, "dffs": d * r * c,
             "ice40_lut4": t * r * c // 20, "logic_depth": 12, "accumulator_width": None, "seconds": 0.5}
            for unit, kind, wb, ab, f, r, c, t, d in units
        ],
    }
