//! Leases in the database: background work (upload expiry, compaction) runs on one replica at a
//! time, whichever holds the named lease, and passes to another when its holder stops renewing.

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
