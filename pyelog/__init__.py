"""pyelog: FreeBSD eventlog(9) for Linux, with eBPF."""
