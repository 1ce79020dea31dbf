"""The local stack: the whole system on this machine, over moto, with the real handlers."""
