//! The seed's story: log a run with no network; `tidelog sync` uploads it later.
//!
//! ```sh
//! cargo run --example quickstart   # writes ./tidelog/run-<date>_<time>-<id>/
//! tidelog sync                     # uploads it when a server is reachable
//! ```

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), tidelog::RunError> {
    let mut settings = tidelog::Settings::new("quickstart");
    settings.mode = tidelog::Mode::Offline;
    settings.config.insert("learning_rate".into(), 0.01.into());
    let run = tidelog::init(settings)?;
    for i in 0..10 {
        run.log([("metric", i as f64), ("loss", 10.0 - i as f64)])?;
    }
    let dir = run.finish(0)?;
    println!("logged 10 steps offline to {}", dir.display());
    Ok(())
}

/// The quickstart writes files under `./tidelog/`: in the browser, see `www/` instead.
#[cfg(target_arch = "wasm32")]
fn main() {}
