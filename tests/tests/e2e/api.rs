//! The Todo API helpers of the shared test-support crate (`test_support::todo_api`): fresh
//! users and their authenticated `Client`, whole answers (`Reply`) with problem+json
//! checks, hand-made tokens.

pub use test_support::todo_api::*;
