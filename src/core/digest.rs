//! A run's config and summary read back from its log, for `files/config.json` and
//! `files/summary.json` where the writer keeps no running copy (Node runs).

use serde_json::{Map, Value as Json};

use super::log_index::LogIndex;
use super::record::{decode, DecodeError, Meta, Record, RowKind};

/// A JSON object: a run's config or its summary.
pub type JsonMap = Map<String, Json>;

/// The merged config and the summary: the last logged value of each history key, overridden
/// by `summary.set()` calls made after it. Values whose key record was lost to damage are
/// left out, as the bundle writer leaves them out.
pub fn config_and_summary(log: &[u8]) -> Result<(JsonMap, JsonMap), DecodeError> {
    let index = LogIndex::new(log)?;
    let mut config = Map::new();
    let mut summary = Map::new();
    for (_, payload) in index.payloads(0..index.len()) {
        match decode(payload)? {
            Record::Key { .. } => {}
            Record::Row(row) if row.kind == RowKind::History => {
                for value in row.values() {
                    let (id, v) = value?;
                    if let Some(name) = index.key(id) {
                        summary.insert(name.to_owned(), v.to_json());
                    }
                }
            }
            Record::Row(_) => {}
            Record::Meta(Meta::Config { update }) => config.extend(update),
            Record::Meta(Meta::Summary { update }) => summary.extend(update),
            Record::Meta(_) => {}
        }
    }
    Ok((config, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::run_log::{LogOptions, RunLog};
    use serde_json::json;

    #[test]
    fn last_values_then_overrides_and_merged_config() {
        let mut log = RunLog::default();
        let mut bytes = Vec::new();
        let config = |v: Json| Meta::Config {
            update: v.as_object().unwrap().clone(),
        };
        log.meta(&config(json!({"lr": 0.1, "batch": 32})));
        log.log(1, [("loss", 3.0), ("acc", 0.5)], LogOptions::default())
            .unwrap();
        log.log(2, [("loss", f64::NAN)], LogOptions::default()).unwrap();
        log.meta(&Meta::Summary {
            update: json!({"acc": 0.99}).as_object().unwrap().clone(),
        });
        log.meta(&config(json!({"lr": 0.01})));
        log.meta(&Meta::Finish {
            exit_code: 0,
            ts_ms: 3,
        });
        log.take_batch(&mut bytes);

        let (config, summary) = config_and_summary(&bytes).unwrap();
        assert_eq!(Json::Object(config), json!({"lr": 0.01, "batch": 32}));
        assert_eq!(Json::Object(summary), json!({"loss": "NaN", "acc": 0.99}));
    }
}
