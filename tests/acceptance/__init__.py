"""Acceptance tests for issue 3: concurrency property test and crash test."""
