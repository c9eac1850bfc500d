// Audit log tests: being written (issue 6).
