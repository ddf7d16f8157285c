//! The pipeline: claim normalise jobs, run the connector's pure normaliser, resolve identity,
//! write the timeline, mark the job done — or retry it with backoff and finally park it dead.

pub mod identity;
pub mod worker;

pub use worker::Pipeline;
