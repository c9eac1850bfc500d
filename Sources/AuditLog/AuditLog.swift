// The tamper-evident audit log: being written (issue 6).
