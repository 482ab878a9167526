//! Shared fixtures for the Portcullis benchmarks.
