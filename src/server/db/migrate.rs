//! Versioned migrations, one SQL file per version and backend under `migrations/`, applied by
//! sqlx's migrator when the database is opened.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// A migration: its version, its file's name (`NNNN_what`), and its SQL for SQLite and for
/// PostgreSQL, from `migrations/sqlite/` and `migrations/postgres/`.
macro_rules! migration {
    ($file:literal) => {
        (
            version($file),
            $file,
            include_str!(concat!("../../../migrations/sqlite/", $file, ".sql")),
            include_str!(concat!("../../../migrations/postgres/", $file, ".sql")),
        )
    };
}

/// The versioned migrations, in order. To change the schema, add `NNNN_what.sql` with the next
/// number to both `migrations/sqlite/` and `migrations/postgres/`, each in its own dialect, and
/// list it here; never edit a released one (migrations/README.md).
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    migration!("0001_schema"),
    migration!("0002_blob_owners"),
    migration!("0003_ops_and_replicas"),
    migration!("0004_segments"),
    migration!("0005_coarse_pre_aggregates"),
];

/// The version a migration's file name starts with (`0002_blob_owners` is 2), checked as the
/// crate compiles.
const fn version(file: &str) -> i64 {
    let b = file.as_bytes();
    assert!(b.len() > 5 && b[4] == b'_', "a migration file is named NNNN_what");
    let (mut v, mut i) = (0, 0);
    while i < 4 {
        assert!(b[i].is_ascii_digit(), "a migration file is named NNNN_what");
        v = v * 10 + (b[i] - b'0') as i64;
        i += 1;
    }
    v
}

/// sqlx's migrator over the backend's [`MIGRATIONS`]: each runs once, in its own transaction,
/// recorded with its checksum in `_sqlx_migrations`; on PostgreSQL an advisory lock keeps
/// replicas that start together from running one twice.
pub fn migrator(sqlite: bool) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, file, lite, pg)| {
            let sql = if sqlite { lite } else { pg };
            let name = &file[5..];
            Migration::new(version, name.into(), MigrationType::Simple, sql.into(), false)
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each backend's folder holds exactly the listed migrations, numbered 1, 2, 3, … in order.
    #[test]
    fn every_migration_file_is_listed_once_for_both_backends() {
        let listed: Vec<String> = MIGRATIONS.iter().map(|m| format!("{}.sql", m.1)).collect();
        for backend in ["sqlite", "postgres"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            assert_eq!(files, listed, "{}", dir.display());
        }
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
    }
}
