//! The digest a run writes when it ends (`files/config.json`, `files/summary.json`): the
//! merged config and the summary, kept as records are logged (and replayed on resume), so
//! finishing never reads the log back. It holds one entry per key, whatever the run's length.

use serde_json::{Map, Value as Json};

/// A JSON object: a run's config or its summary.
pub type JsonMap = Map<String, Json>;

/// The config records merged so far and the `summary.set()` values not yet overridden by a
/// later logged value (the run log clears its last value of a key a summary record names,
/// so whichever came last wins).
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Digest {
    config: JsonMap,
    overrides: JsonMap,
}

impl Digest {
    /// Merges a config record.
    pub fn config_update(&mut self, update: &JsonMap) {
        self.config
            .extend(update.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// Takes a summary record.
    pub fn summary_update(&mut self, update: &JsonMap) {
        self.overrides
            .extend(update.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// A digest as a resume point kept it.
    pub fn from_parts(config: JsonMap, overrides: JsonMap) -> Self {
        Digest { config, overrides }
    }

    /// The `summary.set()` values not yet overridden.
    pub fn overrides(&self) -> &JsonMap {
        &self.overrides
    }

    /// The merged config.
    pub fn config(&self) -> &JsonMap {
        &self.config
    }

    /// The summary: the `summary.set()` values, then the last logged value of each history
    /// key logged after them (`last`).
    pub fn summary(&self, last: JsonMap) -> JsonMap {
        let mut out = self.overrides.clone();
        out.extend(last);
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::core::record::Meta;
    use crate::core::run_log::{LogOptions, RunLog};
    use serde_json::{json, Value as Json};

    #[test]
    fn last_values_then_overrides_and_merged_config() {
        let mut log = RunLog::default();
        let mut bytes = Vec::new();
        let obj = |v: Json| v.as_object().unwrap().clone();
        log.meta(&Meta::Config {
            update: obj(json!({"lr": 0.1, "batch": 32})),
        });
        log.log(1, [("loss", 3.0), ("acc", 0.5)], LogOptions::default())
            .unwrap();
        log.meta(&Meta::Summary {
            update: obj(json!({"loss": 9.0, "best": 1.0})),
        });
        log.log(2, [("loss", f64::NAN)], LogOptions::default()).unwrap();
        log.meta(&Meta::Summary {
            update: obj(json!({"acc": 0.99})),
        });
        log.meta(&Meta::Config {
            update: obj(json!({"lr": 0.01})),
        });
        log.meta(&Meta::Finish {
            exit_code: 0,
            ts_ms: 3,
        });
        let want_summary = json!({"loss": "NaN", "acc": 0.99, "best": 1.0});
        assert_eq!(
            Json::Object(log.config().clone()),
            json!({"lr": 0.01, "batch": 32})
        );
        assert_eq!(Json::Object(log.summary()), want_summary);

        log.take_batch(&mut bytes);
        let (restored, _) = RunLog::restore(&bytes).unwrap();
        assert_eq!(restored.config(), log.config(), "a resume replays the config");
        assert_eq!(Json::Object(restored.summary()), want_summary, "and the summary");
    }
}
