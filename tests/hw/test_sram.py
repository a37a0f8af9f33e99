"""The SRAM macro model (hw.sram): published figures in, macro area and access energy out."""

import pytest

from golden.errors import ConfigError
from hw import sram, stdcell

DUMP = r"""
  attribute \src "hw/top.py:108"
  cell \lutmac_sram_act_buffer \act_buffer
    parameter \ABITS 12
    parameter \RD_PORTS 1
    parameter \SIZE 4096
    parameter \WIDTH 64
    parameter \WR_PORTS 1
    connect \RD_CLK \clk
  end
  cell \lutmac_sram_out_buffer \out_buffer
    parameter \RD_PORTS 1
    parameter \SIZE 512
    parameter \WIDTH 320
    parameter \WR_PORTS 1
  end
"""


def test_yosys_dump_gives_each_buffer_its_geometry():
    macros = sram.from_yosys_dump(DUMP)
    assert [m.text() for m in macros] == ["act_buffer:4096x64:1r1w", "out_buffer:512x320:1r1w"]
    assert macros[0].bits == 4096 * 64 and macros[0].kilobytes == 32.0
    banks = macros[0].banks(2)
    assert [b.text() for b in banks] == ["act_buffer.bank0:2048x64:1rw", "act_buffer.bank1:2048x64:1rw"]
    with pytest.raises(ConfigError, match="single-port"):
        banks[0].banks(2)


def test_dump_without_geometry_is_an_error():
    with pytest.raises(RuntimeError, match="has no parameter"):
        sram.from_yosys_dump("  cell \\x \\act_buffer\n    parameter \\WIDTH 8\n  end\n")


def test_text_round_trips_and_bad_text_or_ports_are_config_errors():
    macro = sram.SramMacro("weight_buffer", 256, 40, "1r1w")
    assert sram.SramMacro.parse(macro.text()) == macro
    for text in ("weight_buffer:256:1r1w", "weight_buffer:256x40", "a b:1x1:1r1w"):
        with pytest.raises(ConfigError):
            sram.SramMacro.parse(text)
    with pytest.raises(ConfigError, match="no published cell"):
        sram.SramMacro.parse("held:16x8:2r1w")
    with pytest.raises(ConfigError, match="not a memory"):
        sram.SramMacro("empty", 0, 8, "1rw")


def test_area_is_the_openram_cell_scaled_by_the_flip_flop_over_the_published_efficiency():
    dff = 96.0
    two_port, one_port = sram.SramMacro("a", 1024, 8, "1r1w"), sram.SramMacro("b", 1024, 8, "1rw")
    assert sram.ARRAY_EFFICIENCY == pytest.approx(62.56 / 200.0)
    assert one_port.area_um2(dff) == pytest.approx(8192 * dff * 62.56 / 464.28 / (62.56 / 200.0))
    assert two_port.area_um2(dff) / one_port.area_um2(dff) == pytest.approx((10.9 * 13.9) / (6.8 * 9.2))
    assert sram.SramMacro("c", 2048, 8, "1r1w").area_um2(dff) == pytest.approx(2 * two_port.area_um2(dff))
    # a bit cell is far smaller than the flip-flop a memory would otherwise be built of
    assert two_port.cell_um2(dff) < dff / 2


def test_energy_is_horowitz_scaled_to_0p18um():
    for kb, pj in sram.HOROWITZ_45NM_SRAM:  # the least-squares law stays within 20 % of each published point
        assert float(sram.pj_per_bit(kb)) * 64 == pytest.approx(pj, rel=0.2)
    macro = sram.SramMacro("a", 1024, 64, "1rw")  # 8 KB
    assert macro.pj_per_bit == pytest.approx(float(sram.pj_per_bit(8.0)) * 16)
    assert sram.SramMacro("b", 4096, 64, "1rw").pj_per_bit > macro.pj_per_bit


@pytest.mark.skipif(not stdcell.LIBERTY.is_file(), reason="qflow-tech-osu018 not installed")
def test_flip_flop_area_is_read_from_the_liberty_file():
    assert sram.liberty_cell_area(stdcell.LIBERTY, stdcell.FLIP_FLOP) == 96.0
    with pytest.raises(RuntimeError, match="NOSUCHCELL"):
        sram.liberty_cell_area(stdcell.LIBERTY, "NOSUCHCELL")
