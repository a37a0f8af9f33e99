"""hw: Amaranth processing elements, MAC array and requantizer implementing golden.spec."""
