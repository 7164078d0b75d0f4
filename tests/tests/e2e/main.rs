//! End-to-end tests in one binary (each test binary links the whole dependency graph).
//! Every test starts its own simulator on a free port and its own temporary lake.

mod audit;
mod aws;
mod aws_infra;
mod backfill;
mod bad_input;
mod both_paths;
mod chaos;
mod client;
mod concurrent_copies;
mod created_dates;
mod embedded;
mod embedded_crash_test;
mod failpoints_aws;
mod failpoints_embedded;
mod flag_contract;
mod layers;
mod leases;
mod ledger_contract;
mod merge_files;
mod progress;
mod properties;
mod queue_contract;
mod redelivery;
mod relations;
mod request_counts;
mod seed_rules;
mod shared_budget;
mod sim;
mod stall_test;
mod state_contract;
