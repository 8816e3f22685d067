//! Helpers for the end-to-end suite live in the test files; this library is empty.
