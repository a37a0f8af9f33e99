// Plain Verilator harness for the lutmac_host top (sim/host.py): no Python, no VPI.
// Reads commands on stdin, one per line:
//   run   pulse `load` and clock until `finished`; prints "done <run_cycles> <error> <ns>"
//   quit  exit
// The program and result files live in the working directory, exactly as under cocotb.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "Vlutmac_host.h"
#include "verilated.h"

int main(int argc, char** argv) {
    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    auto top = std::make_unique<Vlutmac_host>(context.get());
    top->clk = 0;
    top->load = 0;
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
        top->load = 1;
        bool started = false;
        // One full clock period per iteration; `finished` is set by the END edge.
        while (true) {
            top->clk = 1;
            top->eval();
            top->clk = 0;
            top->eval();
            if (top->running) started = true;
            if (started && top->finished) break;
        }
        top->load = 0;
        for (int i = 0; i < 2; ++i) {  // `load` is seen low before the next run
            top->clk = 1;
            top->eval();
            top->clk = 0;
            top->eval();
        }
        const auto ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
        std::printf("done %llu %d %lld\n", static_cast<unsigned long long>(top->run_cycles), int(top->error),
                    static_cast<long long>(ns));
        std::fflush(stdout);
    }
    top->final();
    return 0;
}
