//! End-to-end tests in one binary (each test binary links the whole dependency graph).

mod sim;
