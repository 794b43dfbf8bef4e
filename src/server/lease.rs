//! Leases in the database: background work (upload expiry, compaction) runs on one replica at a
//! time, whichever holds the named lease, and passes to another when its holder stops renewing;
//! each replica's liveness lease tells the others whether work it claimed is still its own.

use sqlx::AnyPool;

use super::auth::random_hex;
use super::db::now_ms;
use super::error::ServerError;

/// This process's claim on named leases.
#[derive(Clone, Debug)]
pub struct Leases {
    /// Random per process, so two replicas never mistake each other's lease for their own.
    holder: String,
}

impl Leases {
    /// A new holder identity for this process.
    pub fn new() -> Result<Leases, ServerError> {
        Ok(Leases {
            holder: random_hex(16)?,
        })
    }

    /// This process's identity, recorded on work it claims (an upload it ingests).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Renews this process's liveness lease for `ttl_ms`: while it holds, the work it claimed
    /// is its own; once it lapses (the process died), another replica may take that work over.
    pub async fn beat(&self, db: &AnyPool, ttl_ms: i64) -> Result<(), ServerError> {
        self.hold(db, &alive(&self.holder), ttl_ms).await.map(drop)
    }

    /// True while replica `holder` renews its liveness lease.
    pub async fn is_alive(db: &AnyPool, holder: &str) -> Result<bool, ServerError> {
        let until: Option<i64> = sqlx::query_scalar("SELECT until_ms FROM leases WHERE name = $1")
            .bind(alive(holder))
            .fetch_optional(db)
            .await?;
        Ok(until.is_some_and(|t| t >= now_ms()))
    }

    /// Takes or renews lease `name` for `ttl_ms` when it is free, expired or already ours; true
    /// when this process holds it now. One conditional upsert, so two replicas asking at once
    /// cannot both win.
    pub async fn hold(&self, db: &AnyPool, name: &str, ttl_ms: i64) -> Result<bool, ServerError> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
             WHERE leases.until_ms < $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(&self.holder)
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// The name of the liveness lease of replica `holder`.
fn alive(holder: &str) -> String {
    format!("alive:{holder}")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn one_holder_at_a_time_and_an_expired_lease_passes_on(db: &AnyPool) {
        let (a, b) = (Leases::new().unwrap(), Leases::new().unwrap());
        assert!(a.hold(db, "sweep", 60_000).await.unwrap());
        assert!(
            !b.hold(db, "sweep", 60_000).await.unwrap(),
            "b took a lease a holds"
        );
        assert!(
            a.hold(db, "sweep", 60_000).await.unwrap(),
            "a could not renew its own lease"
        );
        assert!(b.hold(db, "other", 60_000).await.unwrap(), "leases are by name");
        assert!(a.hold(db, "sweep", -1).await.unwrap());
        assert!(
            b.hold(db, "sweep", 60_000).await.unwrap(),
            "an expired lease did not pass on"
        );
        assert!(!a.hold(db, "sweep", 60_000).await.unwrap());
        assert!(!Leases::is_alive(db, a.holder()).await.unwrap());
        a.beat(db, 60_000).await.unwrap();
        assert!(Leases::is_alive(db, a.holder()).await.unwrap());
        a.beat(db, -1).await.unwrap();
        assert!(
            !Leases::is_alive(db, a.holder()).await.unwrap(),
            "a lapsed beat is alive"
        );
    }

    #[tokio::test]
    async fn one_holder_at_a_time_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::db::open(dir.path(), None).await.unwrap();
        one_holder_at_a_time_and_an_expired_lease_passes_on(&db).await;
    }

    #[tokio::test]
    async fn one_holder_at_a_time_on_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let url = super::super::db::fresh_postgres().await;
        let db = super::super::db::open(dir.path(), Some(&url)).await.unwrap();
        one_holder_at_a_time_and_an_expired_lease_passes_on(&db).await;
    }
}
