"""Development-only tools: the local Azure emulator, the demo and the local dev host. Never deployed."""
