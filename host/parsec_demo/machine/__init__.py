"""Booting machines (QEMU, Arm FVP) and reaching them (consoles, SSH)."""
