"""cocotb testbench of the PE bank (sim/pe_bank.py): every code pair of every case, checked against golden."""

import cocotb

from .cocotb_io import HostSession
from .jobs import PeJob, PeReport, load_job, save_report
from .pe_bank import case_program, check_case


@cocotb.test()
async def pe_products(dut):
    job = load_job(PeJob)
    session = HostSession(dut, job.layout)
    failures, checked = [], {}
    for case in job.cases:
        result = await session.run(case_program(job.layout, case))
        failures += check_case(case, result.captures)
        checked[case.kind] = checked.get(case.kind, 0) + len(case)
    save_report(PeReport(failures=failures, products_checked=checked))
    assert not failures, failures[0]
