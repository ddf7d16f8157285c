//! SQLite is single-node: `serve` holds a lock on the database file for its lifetime.

mod common;

/// SQLite is single-node: a second node on the same file is refused with a clear error, and
/// the file is free again once the first node stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_sqlite_file_is_refused_with_a_clear_error() {
    let Some(db) = common::fresh_db(common::Db::Sqlite).await else {
        return;
    };
    let first = switchboard::app::Application::build(common::settings(&db.url))
        .await
        .expect("first node");
    let err = match switchboard::app::Application::build(common::settings(&db.url)).await {
        Ok(_) => panic!("a second node on the same SQLite file must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("another Switchboard node"), "{err}");
    assert!(err.contains("PostgreSQL"), "{err}");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(first.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let _ = tx.send(());
    running.await.expect("join").expect("clean stop");
    let again = switchboard::app::Application::build(common::settings(&db.url)).await;
    assert!(again.is_ok(), "free again after the first node stopped");
}
