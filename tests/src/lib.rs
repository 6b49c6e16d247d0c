//! End-to-end tests of `d3hr-cli` live in `tests/tests/`; they drive the real binary.
