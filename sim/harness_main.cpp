// Plain Verilator harness for the host-sequencer top (sim/sequencer.py): no Python, no VPI.
// Reads commands on stdin, one per line:
//   run   pulse the load port and clock until finished; prints "done <run_cycles> <error> <ns>"
//   quit  exit
// The program and result files live in the working directory, exactly as under cocotb.
// The top's class and port names come from the header sim/sequencer.py generates (control_header).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "lutmac_host_control.h"
#include HOST_TOP_HEADER
#include "verilated.h"

namespace {

// One full clock period: the rising edge, then the falling one.
void clock_cycle(HOST_TOP_CLASS& top) {
    top.HOST_CLOCK = 1;
    top.eval();
    top.HOST_CLOCK = 0;
    top.eval();
}

}  // namespace

int main(int argc, char** argv) {
    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    auto top = std::make_unique<HOST_TOP_CLASS>(context.get());
    top->HOST_CLOCK = 0;
    top->HOST_LOAD = 0;
    top->eval();
    std::string command;
    while (std::getline(std::cin, command)) {
        if (command == "quit") break;
        if (command != "run") {
            std::printf("error unknown command '%s'\n", command.c_str());
            std::fflush(stdout);
            continue;
        }
        const auto start = std::chrono::steady_clock::now();
        top->HOST_LOAD = 1;
        bool started = false;
        // `finished` is set by the END edge.
        while (true) {
            clock_cycle(*top);
            if (top->HOST_RUNNING) started = true;
            if (started && top->HOST_FINISHED) break;
        }
        top->HOST_LOAD = 0;
        for (int i = 0; i < HOST_RELOAD_GAP_CYCLES; ++i) clock_cycle(*top);  // load is seen low before the next run
        const auto ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
        std::printf("done %llu %d %lld\n", static_cast<unsigned long long>(top->HOST_RUN_CYCLES), int(top->HOST_ERROR),
                    static_cast<long long>(ns));
        std::fflush(stdout);
    }
    top->final();
    return 0;
}
