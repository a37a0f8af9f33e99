"""sim: cocotb testbenches of the generated RTL on Icarus and Verilator, checked against golden."""
