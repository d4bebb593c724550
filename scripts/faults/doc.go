// Package faults holds georep's fault tests (`make test-faults`): real
// `georep slave` and `georep master` processes on loopback, the master's
// link through a proxy the test controls (internal/tcpproxy), then faults:
// the master killed with SIGKILL during churn, the slave killed during a
// large data stream, the link cut mid-batch, the slave's filesystem full.
// After each, the trees are compared and the bytes the master sent again
// are measured at the proxy. They run only with GEOREP_FAULTS=1 (the disk
// test also needs root, to mount a small tmpfs).
package faults
