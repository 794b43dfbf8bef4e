//! Each failure gets its status from a real SQLite, a real PostgreSQL and a real full disk.

use super::*;

/// A real SQLite database that runs out of pages answers 507 with the reason, not 500.
#[tokio::test]
async fn a_full_database_is_507() {
    sqlx::any::install_default_drivers();
    let db = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (v TEXT)").execute(&db).await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&db)
        .await
        .unwrap();
    sqlx::query(&format!("PRAGMA max_page_count = {}", pages + 2))
        .execute(&db)
        .await
        .unwrap();
    let full = sqlx::query("INSERT INTO t (v) VALUES ($1)")
        .bind("x".repeat(1 << 20))
        .execute(&db)
        .await
        .unwrap_err();
    let e = ApiError::from(full);
    assert_eq!(e.status(), StatusCode::INSUFFICIENT_STORAGE, "{e}");
    let resp = e.into_response();
    assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("insufficient storage") && text.contains("full"),
        "{text}"
    );
}

/// ENOSPC from a write, as `/dev/full` gives it, is 507 too.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_507() {
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"))
        .unwrap_err();
    let e = ApiError::from(ServerError::io("writing a blob", err));
    assert_eq!(e.status(), StatusCode::INSUFFICIENT_STORAGE, "{e}");
}

/// PostgreSQL's SQLSTATEs, raised by a real server, get the statuses their class calls for.
#[tokio::test]
async fn postgres_errors_are_507_503_or_500_by_their_code() {
    let url = crate::server::db::fresh_postgres().await;
    let db = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    for (code, status) in [
        ("53100", 507),
        ("40001", 503),
        ("40P01", 503),
        ("53300", 503),
        ("55P03", 503),
        ("57P03", 503),
        ("22021", 400),
        ("22P05", 400),
        ("23505", 500),
        ("22023", 500),
    ] {
        let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{code}'; END $$");
        let e = ApiError::from(sqlx::query(&sql).execute(&db).await.unwrap_err());
        assert_eq!(e.status().as_u16(), status, "{code}: {e}");
    }
}

/// A database that refuses connections is a moment's outage: 503, not 500.
#[tokio::test]
async fn an_unreachable_database_is_503() {
    sqlx::any::install_default_drivers();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(1))
        .connect(&format!("postgres://nobody@127.0.0.1:{port}/none"))
        .await
        .unwrap_err();
    let e = ApiError::from(refused);
    assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE, "{e:?}");
}
