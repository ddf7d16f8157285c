//! Baseline HTTP server for ingest benchmarks (see `bench/README.md`).
//!
//! `POST /webhooks/{id}` reads the whole request body and answers `200`
//! with a tiny JSON body. No signature check, no parsing, no storage: this
//! is the ceiling the real hub is compared against, measured with the same
//! client on the same cores.

use std::net::SocketAddr;

use axum::{extract::Path, http::header, response::IntoResponse, routing::post, Router};
use bytes::Bytes;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "noop-server",
    about = "Bare axum server: POST /webhooks/{id} reads the body and answers 200"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
}

async fn webhook(Path(_id): Path<String>, body: Bytes) -> impl IntoResponse {
    // Touch the body so the read cannot be optimised away.
    std::hint::black_box(body.len());
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"ok":true}"#,
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let app = Router::new().route("/webhooks/{id}", post(webhook));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("noop-server listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
