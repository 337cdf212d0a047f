"""InstructIR Desktop: offline photo restoration driven by plain-language instructions."""

__version__ = "0.1.0"
