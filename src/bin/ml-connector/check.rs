//! `ml-connector check`: the configuration, every connector's health check and every
//! destination the routes send to, each bounded in time, plus what the journal holds that
//! the file no longer names.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use ml_connector::audit::DeliveryFilter;
use ml_connector::config::{PipelineConfig, ProcessEnv};
use ml_connector::pipeline::Pipeline;
use ml_connector::sink::{DestinationCheck, Sink};
use ml_connector::{Destination, Error, Result};

use super::{load_with_hooks, receiver_hooks};

/// The check's own outcome, or, after `limit`, a timeout said as an error. A system that
/// does not answer is retried by its connector (as a run would); `check` reports it
/// instead of waiting minutes.
async fn bounded<T>(limit: Duration, what: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, what).await.unwrap_or_else(|_| {
        Err(Error::remote(
            "check",
            ml_connector::ErrorClass::RETRYABLE,
            format!(
                "no answer within {}s (unreachable, or still retrying after the errors \
                 logged; --timeout-secs gives it longer)",
                limit.as_secs()
            ),
        ))
    })
}

pub(super) async fn check(path: &Path, limit: Duration) -> Result<()> {
    let (config, a, hooks) = load_with_hooks(path).await?;
    let mut failed = 0;
    if let Some(r) = &config.receivers {
        // Builds every receiver (secrets from the environment, keys, public URLs) and the
        // handlers connectors route to (approvals) without listening.
        let _app = ml_connector::serve::router_with_hooks(
            r,
            a.pipeline.store(),
            &ProcessEnv,
            None,
            &receiver_hooks(&hooks, &a)?,
        )?;
        say!("ok      receivers on {}", r.listen_addr(&ProcessEnv)?);
    }
    // Every system at once: a slow one does not hold up the report on the others.
    let sources = futures::future::join_all(
        a.sources
            .iter()
            .map(|(_, source)| bounded(limit, source.healthcheck())),
    )
    .await;
    for ((stream, source), outcome) in a.sources.iter().zip(sources) {
        match outcome {
            Ok(()) => say!("ok      stream {stream}: {source}"),
            Err(e) => {
                failed += 1;
                say!("FAILED  stream {stream}: {source}: {e}");
            }
        }
    }
    failed += renames(&a.pipeline).await?;
    for line in orphan_streams(&a.pipeline).await {
        say!("warning {line}");
    }
    let destinations = config.destinations();
    let sinks = futures::future::join_all(
        a.sinks
            .iter()
            .map(|(name, sink)| check_sink(&config, name, sink.as_ref(), &destinations, limit)),
    )
    .await;
    for (lines, n) in sinks {
        failed += n;
        for line in lines {
            say!("{line}");
        }
    }
    match a.pipeline.store().stats().await {
        Ok(_) => say!("ok      journal: {:?}", a.pipeline.store()),
        Err(e) => {
            failed += 1;
            say!("FAILED  journal: {e}");
        }
    }
    if failed > 0 {
        // The file itself is valid (it loaded): what failed is a system or its access.
        return Err(Error::remote(
            path.display().to_string(),
            ml_connector::ErrorClass::Permanent,
            format!("{failed} connector(s) failed their health check (see FAILED above)"),
        ));
    }
    Ok(())
}

/// A rename the next run will make in the journal (check itself changes nothing). Returns
/// how many renames cannot be made.
async fn renames(pipeline: &Pipeline) -> Result<usize> {
    let store = pipeline.store();
    let mut failed = 0;
    for s in pipeline.streams() {
        let Some(old) = s.renamed_from() else {
            continue;
        };
        let name = s.name();
        if store.load_position(name).await?.is_some() {
            continue;
        }
        if store.load_position(old).await?.is_some() {
            say!("ok      stream {name}: takes over `{old}` in the journal at the next run");
        } else {
            failed += 1;
            say!(
                "FAILED  stream {name}: renamed_from `{old}`, but the journal has no stream `{old}`"
            );
        }
    }
    Ok(failed)
}

/// Streams the journal holds, with deliveries, that no stream of the file names (nor
/// renames): a stream renamed without `renamed_from` starts over under its new name and
/// sends its records again. One line each, for `check` and the start of `run`; none when the journal cannot
/// list its streams.
pub(super) async fn orphan_streams(pipeline: &Pipeline) -> Vec<String> {
    let Ok(journaled) = pipeline.store().streams().await else {
        return Vec::new();
    };
    let configured: Vec<&str> = pipeline
        .streams()
        .iter()
        .flat_map(|s| std::iter::once(s.name()).chain(s.renamed_from()))
        .collect();
    // Configured streams the journal has never seen: one of them may be the renamed one.
    let new: Vec<&str> = pipeline
        .streams()
        .iter()
        .filter(|s| s.renamed_from().is_none() && !journaled.iter().any(|j| j == s.name()))
        .map(ml_connector::Stream::name)
        .collect();
    let mut orphans = Vec::new();
    for j in &journaled {
        if configured.contains(&j.as_str()) {
            continue;
        }
        // Only a stream whose records went somewhere can send them again under a new
        // name (a journal of approval decisions, say, sends nothing).
        let sent = pipeline
            .store()
            .deliveries(&DeliveryFilter {
                stream: Some(j.clone()),
                limit: Some(1),
                ..DeliveryFilter::default()
            })
            .await
            .is_ok_and(|d| !d.is_empty());
        if sent {
            orphans.push(j);
        }
    }
    orphans
        .into_iter()
        .map(|j| {
            let hint = if new.is_empty() {
                String::new()
            } else {
                format!(
                    "; if {} replaces it, add `renamed_from = \"{j}\"` to it, or its records \
                     are read and sent again under the new name",
                    new.iter()
                        .map(|n| format!("stream `{n}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            };
            format!("stream {j}: in the journal but in no stream of this file{hint}")
        })
        .collect()
}

/// One sink's health check and, when it passes, each destination the routes send to
/// (before the first send finds a channel missing). Returns the lines to print and how
/// many failed.
async fn check_sink(
    config: &PipelineConfig,
    name: &str,
    sink: &dyn Sink,
    destinations: &[Destination],
    limit: Duration,
) -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let mut failed = 0;
    match bounded(limit, sink.healthcheck()).await {
        Ok(()) => lines.push(format!("ok      sink {name}: {sink}")),
        Err(e) => {
            lines.push(format!("FAILED  sink {name}: {sink}: {e}"));
            return (lines, 1);
        }
    }
    for d in destinations.iter().filter(|d| d.sink == name) {
        match bounded(limit, sink.check_destination(d)).await {
            Ok(DestinationCheck::Ready(found)) => {
                lines.push(format!("ok      destination {d}: {found}"));
            }
            Ok(DestinationCheck::Unchecked(why)) => {
                lines.push(format!("-       destination {d}: not checked ({why})"));
            }
            Ok(other) => lines.push(format!("-       destination {d}: {other:?}")),
            Err(e) => {
                failed += 1;
                lines.push(format!(
                    "FAILED  destination {d}: {e}{}",
                    alias_hint(config, d)
                ));
            }
        }
    }
    (lines, failed)
}

/// For a refused destination that is a bare word and no alias of its sink (`sms:treasurr`):
/// the aliases the sink has, since a misspelt alias is the likelier mistake.
fn alias_hint(config: &PipelineConfig, d: &Destination) -> String {
    let Some(sink) = config.sinks.get(&d.sink) else {
        return String::new();
    };
    let aliases: Vec<&str> = sink
        .channels
        .keys()
        .chain(sink.recipients.keys())
        .map(String::as_str)
        .collect();
    let known = sink
        .channels
        .values()
        .chain(sink.recipients.values())
        .any(|a| a == &d.address);
    // A word (not `#name`, `+49…`, an email, or an upper-case channel id).
    let bare = d
        .address
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && d.address.chars().any(|c| c.is_ascii_lowercase());
    if known || !bare || aliases.is_empty() {
        return String::new();
    }
    format!(
        " (`{}` is not an alias of sinks.{}: {})",
        d.address,
        d.sink,
        aliases.join(", ")
    )
}
