"""Mode drivers: how BASE, PROCESS and THREAD wire the shared parts together."""
