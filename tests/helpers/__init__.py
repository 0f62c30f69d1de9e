"""Test helpers: subprocesses from the repository root, scripts run by the tests."""
